"""First-frame checks read the image itself: type, size, shortest side, shape, animation, bombs."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from bot.images import (
    MAX_REDIRECTS,
    ImageNotFromDiscord,
    ImageRejected,
    ImageUnavailable,
    MediaOrigins,
    check_image,
    fetch_image,
)


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


# ---- decoding is bounded by the header's pixel count (issue 10, item 7) -------------------------------------------

def header_only_png(width: int, height: int) -> bytes:
    """A PNG that declares its size and carries no pixel data: decoding it would fail, reading its header not."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("width", "height"), [(7000, 7000), (10_000, 10_000), (100_000, 100_000)],
                         ids=["49-megapixels", "100-megapixels", "10-gigapixels"])
def test_too_many_pixels_is_refused_from_the_header_before_decoding(width: int, height: int) -> None:
    # The file has no pixels at all: a decode would say "damaged"; the header check says "too large/many".
    with pytest.raises(ImageRejected, match="megapixels"):
        check_image(header_only_png(width, height))


# ---- members' images come only from Discord's media hosts (issue 10, item 6) --------------------------------------

LOCAL = "http://127.0.0.1:5555/api/v10"


@pytest.mark.parametrize("url", [
    "https://cdn.discordapp.com/attachments/1/2/cat.png?ex=1&is=2&hm=3",
    "https://media.discordapp.net/external/abc/https/example.com/cat.png",
    "https://CDN.discordapp.com:443/attachments/1/2/cat.png",
    "http://127.0.0.1:5555/attachments/1/cat.png?ex=1",
])
def test_discord_media_urls_are_allowed(url: str) -> None:
    assert MediaOrigins.discord(LOCAL).check(url).lower().startswith(url.split(":", maxsplit=1)[0])


@pytest.mark.parametrize("url", [
    "https://example.com/cat.png",
    "http://cdn.discordapp.com/attachments/1/2/cat.png",  # not https
    "https://cdn.discordapp.com:8443/attachments/1/2/cat.png",  # another port
    "https://cdn.discordapp.com@169.254.169.254/latest/meta-data",  # userinfo trick
    "https://user:pw@cdn.discordapp.com/a.png",
    "https://evil.example#@cdn.discordapp.com/a.png",
    "https://cdn.discordapp.com.evil.example/a.png",
    "https://cdn.discordapp.com\\@evil.example/a.png",
    "http://127.0.0.1:5556/attachments/1/cat.png",  # the local Discord's host, another port
    "http://localhost:5555/attachments/1/cat.png",
    "file:///etc/passwd",
    "/attachments/1/cat.png",
    "",
])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ImageNotFromDiscord, match="posted on Discord"):
        MediaOrigins.discord(LOCAL).check(url)


def test_without_a_local_discord_only_discords_hosts_are_allowed() -> None:
    with pytest.raises(ImageNotFromDiscord):
        MediaOrigins.discord(None).check("http://127.0.0.1:5555/attachments/1/cat.png")


class Hosts:
    """Two real HTTP servers on 127.0.0.1: `media` (allowed) and `inside` (a host on the bot's network)."""

    def __init__(self) -> None:
        self.hits: dict[str, list[str]] = {"media": [], "inside": []}
        self.urls: dict[str, str] = {}
        self._runners: list[web.AppRunner] = []

    async def start(self) -> Hosts:
        for name in ("media", "inside"):
            app = web.Application()
            app.router.add_get("/{tail:.*}", self._handler(name))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.urls[name] = f"http://127.0.0.1:{port}"
            self._runners.append(runner)
        return self

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()

    def _handler(self, name: str) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.hits[name].append(request.path_qs)
            tail = request.match_info["tail"]
            if tail == "cat.png":
                return web.Response(body=encode(640, 360), content_type="image/png")
            if tail == "to-inside":
                raise web.HTTPFound(f"{self.urls['inside']}/secret")
            if tail == "to-cat":
                raise web.HTTPFound("/cat.png")
            if tail.startswith("loop"):
                raise web.HTTPFound(f"/loop{len(tail)}")
            return web.Response(status=404, text="This content is no longer available.")

        return handle


@pytest.fixture
async def hosts() -> AsyncIterator[Hosts]:
    servers = await Hosts().start()
    try:
        yield servers
    finally:
        await servers.stop()


async def test_fetch_follows_a_redirect_only_within_the_media_hosts(hosts: Hosts) -> None:
    origins = MediaOrigins.discord(hosts.urls["media"])
    async with aiohttp.ClientSession() as session:
        data = await fetch_image(session, f"{hosts.urls['media']}/to-cat", origins)
        assert check_image(data).width == 640
        with pytest.raises(ImageNotFromDiscord):
            await fetch_image(session, f"{hosts.urls['media']}/to-inside", origins)
        with pytest.raises(ImageNotFromDiscord):
            await fetch_image(session, f"{hosts.urls['inside']}/secret", origins)
        with pytest.raises(ImageUnavailable, match="expired"):
            await fetch_image(session, f"{hosts.urls['media']}/gone.png", origins)
        with pytest.raises(ImageUnavailable):
            await fetch_image(session, f"{hosts.urls['media']}/loop", origins)
    assert hosts.hits["inside"] == []  # the host on the bot's network was never contacted
    assert len([h for h in hosts.hits["media"] if h.startswith("/loop")]) == MAX_REDIRECTS + 1  # bounded
