"""First-frame image checks, made on the image's own bytes before any credit is held or upstream call made."""

from __future__ import annotations

import asyncio
import io
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
from PIL import Image, UnidentifiedImageError
from yarl import URL

from storage.errors import UserFacingError

MAX_IMAGE_BYTES = 10 * 1000 * 1000  # the upstream's "10 MB"; the decimal reading is the safe one
MIN_SHORT_SIDE = 300
MAX_PIXELS = 40_000_000  # beyond this a "small" file is a decompression bomb, not a photo
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
DISCORD_MEDIA_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")
MAX_REDIRECTS = 3  # Discord's media hosts answer directly; a short chain is tolerated, each hop checked
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=20, sock_connect=5)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class ImageRejected(UserFacingError, ValueError):
    """The image cannot be a first frame; `user_message` says what to change."""


class ImageUnavailable(ImageRejected):
    """The image could not be read from its link (gone, expired, refused, too slow): not the picture's fault."""


class ImageNotFromDiscord(ImageRejected):
    """The link does not point at one of Discord's media hosts, so the bot will not open it."""


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


@dataclass(frozen=True, slots=True)
class MediaOrigins:
    """The (scheme, host, port) triples members' images may be fetched from: Discord's media hosts only.

    Why: a member controls an embed's `url` and could point it at the bot's own network (server-side request
    forgery); attachments and embed `proxy_url`s live on Discord's hosts, which only serve what Discord stored.
    """

    origins: frozenset[tuple[str, str, int]]

    @classmethod
    def discord(cls, api_base: str | None = None, extra: Iterable[str] = ()) -> MediaOrigins:
        """Discord's media hosts over https, plus the origin of `DISCORD_API_BASE` when one is configured
        (a local or proxied Discord serves its attachments from its own host and port)."""
        origins = {("https", host, 443) for host in DISCORD_MEDIA_HOSTS}
        for base in (api_base, *extra):
            if base:
                url = URL(base)
                if url.scheme in ("http", "https") and url.host and url.port is not None:
                    origins.add((url.scheme, url.host.lower(), url.port))
        return cls(frozenset(origins))

    def check(self, url: str | URL) -> str:
        """The URL in the exact form that will be fetched and handed upstream, if it is on an allowed origin.

        Raises:
            ImageNotFromDiscord: another host or port, another scheme, credentials in the URL, or not a URL.
        """
        try:
            parsed = url if isinstance(url, URL) else URL(url)
        except (ValueError, TypeError):
            raise ImageNotFromDiscord(_NOT_FROM_DISCORD) from None
        host = (parsed.host or "").lower()
        if (
            not parsed.absolute
            or parsed.user is not None
            or parsed.password is not None
            or parsed.port is None
            or (parsed.scheme, host, parsed.port) not in self.origins
        ):
            raise ImageNotFromDiscord(_NOT_FROM_DISCORD)
        return str(parsed.with_fragment(None))


_NOT_FROM_DISCORD = ("I can only use pictures posted on Discord: attach the image to a message (or to "
                     "/sora generate) and try again.")
_GONE = "I couldn't download that image (its link may have expired). Attach it again."
_SLOW = "I couldn't download that image in time. Try attaching it again."


async def fetch_image(session: aiohttp.ClientSession, url: str, origins: MediaOrigins, *,
                      timeout: aiohttp.ClientTimeout = FETCH_TIMEOUT) -> bytes:
    """Read at most 10 MB of a member's image from Discord's media hosts, with a time bound.

    Redirects are followed by hand, at most MAX_REDIRECTS, each target checked against `origins` before it is
    opened, so no hop can leave Discord's hosts. `url` must be the one `origins.check()` returned.

    Raises:
        ImageNotFromDiscord: the link or a redirect points elsewhere.
        ImageUnavailable: not found, expired, an error status, too many redirects, a network failure or timeout.
        ImageRejected: the image is larger than 10 MB (declared or read).
    """
    target = URL(origins.check(url), encoded=True)
    try:
        async with asyncio.timeout(timeout.total):
            for _ in range(MAX_REDIRECTS + 1):
                async with session.get(target, timeout=timeout, allow_redirects=False) as response:
                    if response.status in _REDIRECTS:
                        location = response.headers.get("Location")
                        if not location:
                            raise ImageUnavailable(_GONE)
                        target = URL(origins.check(target.join(URL(location))), encoded=True)
                        continue
                    if response.status != 200:
                        raise ImageUnavailable(_GONE)
                    if response.content_length and response.content_length > MAX_IMAGE_BYTES:
                        check_size(response.content_length)
                    data = bytearray()
                    async for chunk in response.content.iter_chunked(64 * 1024):
                        data += chunk
                        if len(data) > MAX_IMAGE_BYTES:
                            check_size(len(data))
                    return bytes(data)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        if isinstance(exc, ImageRejected):
            raise
        raise ImageUnavailable(_SLOW) from None
    raise ImageUnavailable(_GONE)  # a redirect chain longer than MAX_REDIRECTS


def check_image(data: bytes) -> ImageInfo:
    """Read the image itself and check it against the upstream's first-frame rules.

    Blocking (Pillow decodes the whole image): call it in a worker thread. Decoding is bounded: `Image.open`
    reads only the header, and the format, the pixel count (MAX_PIXELS) and animation are checked from it
    before `load()` decodes a single pixel, so a small file that would inflate to gigabytes is never inflated.

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
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own header check (beyond ~89 megapixels) fired before ours could: the same refusal.
        raise ImageRejected("That image has too many pixels to use. Resize it to under 40 megapixels.") from None
    except UnidentifiedImageError:
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
