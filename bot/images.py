"""First-frame image checks, made on the image's own bytes before any credit is held or upstream call made."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

MAX_IMAGE_BYTES = 10 * 1000 * 1000  # the upstream's "10 MB"; the decimal reading is the safe one
MIN_SHORT_SIDE = 300
MAX_PIXELS = 40_000_000  # beyond this a "small" file is a decompression bomb, not a photo
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


class ImageRejected(ValueError):
    """The image cannot be a first frame; `user_message` says what to change."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str
    mime: str
    width: int
    height: int
    size: int


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def check_size(size: int) -> None:
    """Refuse an attachment by its declared size before downloading it."""
    if size > MAX_IMAGE_BYTES:
        raise ImageRejected(f"That image is {_mb(size)}; the first frame can be at most 10 MB. Try a smaller JPEG.")
    if size <= 0:
        raise ImageRejected("That image file is empty. Attach a JPEG, PNG or WebP picture.")


def check_image(data: bytes) -> ImageInfo:
    """Read the image itself and check it against the upstream's first-frame rules.

    Blocking (Pillow decodes the whole image): call it in a worker thread.

    Raises:
        ImageRejected: with a sentence that tells the member what to fix.
    """
    check_size(len(data))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format or ""
                width, height = img.size
                if fmt not in FORMATS:
                    raise ImageRejected(
                        f"That file is {fmt or 'not an image I can read'}, not JPEG, PNG or WebP. "
                        "Save it as one of those and try again."
                    )
                if width * height > MAX_PIXELS:
                    raise ImageRejected(
                        f"That image is {width}×{height} pixels, too large to use. Resize it to under 40 megapixels."
                    )
                if getattr(img, "is_animated", False):
                    raise ImageRejected("That image is animated. Use a still JPEG, PNG or WebP as the first frame.")
                img.load()  # decodes every byte: a truncated or corrupt file fails here
    except ImageRejected:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("I couldn't read that file as an image. Attach a JPEG, PNG or WebP picture.") from None
    except (OSError, SyntaxError, ValueError):
        raise ImageRejected("That image is damaged or cut short. Save it again and re-attach it.") from None
    short = min(width, height)
    if short < MIN_SHORT_SIDE:
        raise ImageRejected(
            f"That image is {width}×{height}; its shortest side must be at least {MIN_SHORT_SIDE} px. "
            "Use a larger image."
        )
    if 5 * width < 2 * height or 2 * width > 5 * height:  # exact integer test of 2:5 <= w:h <= 5:2
        raise ImageRejected(
            f"That image is {width}×{height}; its shape must be between 2:5 (tall) and 5:2 (wide). "
            "Crop it and try again."
        )
    return ImageInfo(format=fmt, mime=FORMATS[fmt], width=width, height=height, size=len(data))
