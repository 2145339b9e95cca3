"""First-frame checks read the image itself: type, size, shortest side, shape, animation, bombs."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.images import ImageRejected, check_image


def encode(width: int, height: int, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_accepts_supported_formats(fmt: str) -> None:
    info = check_image(encode(640, 360, fmt))
    assert (info.width, info.height, info.format) == (640, 360, fmt)


@pytest.mark.parametrize(
    ("size", "ok"),
    [((300, 750), True), ((750, 300), True), ((300, 751), False), ((751, 300), False), ((299, 400), False),
     ((300, 300), True), ((400, 299), False)],
)
def test_shape_and_shortest_side_at_the_edges(size: tuple[int, int], ok: bool) -> None:
    data = encode(*size)
    if ok:
        check_image(data)
    else:
        with pytest.raises(ImageRejected):
            check_image(data)


def test_gif_is_refused_even_when_named_png() -> None:
    buf = io.BytesIO()
    Image.new("P", (400, 400)).save(buf, "GIF")
    with pytest.raises(ImageRejected, match="not JPEG, PNG or WebP"):
        check_image(buf.getvalue())


def test_animated_webp_is_refused() -> None:
    frames = [Image.new("RGB", (400, 400), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(ImageRejected, match="animated"):
        check_image(buf.getvalue())


def test_truncated_image_is_refused() -> None:
    data = encode(800, 600, "JPEG", quality=95)
    with pytest.raises(ImageRejected):
        check_image(data[: len(data) // 2])


def test_text_pretending_to_be_an_image() -> None:
    with pytest.raises(ImageRejected, match="couldn't read"):
        check_image(b"<html>not an image</html>" * 10)


def test_decompression_bomb_small_in_bytes() -> None:
    data = encode(20000, 20000, "PNG")  # 400 megapixels of one colour compress to a few hundred KB
    assert len(data) < 2_000_000
    with pytest.raises(ImageRejected):
        check_image(data)


def test_over_ten_megabytes_is_refused_before_decoding() -> None:
    with pytest.raises(ImageRejected, match="at most 10 MB"):
        check_image(b"\x89PNG" + b"\0" * 10_000_001)
