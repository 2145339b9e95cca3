"""A video's last frame as a first-frame image (Extend), taken with the ffmpeg that imageio-ffmpeg ships.

The frame is a PNG meeting the first-frame rules of bot.images: a source smaller than MIN_SHORT_SIDE on its
short side is scaled up (the upstream refuses smaller first frames; Sora's own 720p output never needs it),
and it is checked by `check_image` like any member's picture before it is used.
"""

from __future__ import annotations

import asyncio
import io
import logging
import tempfile
from pathlib import Path

import imageio_ffmpeg
from PIL import Image

from bot.images import MIN_SHORT_SIDE, check_image
from bot.video_fit import run_ffmpeg

log = logging.getLogger(__name__)

FRAME_TIMEOUT = 60.0
TAIL_SECONDS = 1.0  # decode only the last second: each decoded frame overwrites the file, the last one stays


class FrameError(Exception):
    """ffmpeg could not take a frame from the file (not a video, damaged, or too slow)."""


async def last_frame(video: Path, *, timeout: float = FRAME_TIMEOUT) -> bytes:
    """The last frame of `video` as PNG bytes that pass `check_image`.

    Raises:
        FrameError: no frame could be read.
    """
    with tempfile.TemporaryDirectory(prefix="sora-frame-") as tmp:
        out = Path(tmp) / "last.png"
        args = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-sseof", f"-{TAIL_SECONDS}",
                "-i", str(video), "-an", "-update", "1", "-y", str(out)]
        result = await run_ffmpeg(args, timeout)
        if result is None:
            raise FrameError("ffmpeg took too long")
        code, err = result
        if code != 0 or not out.is_file() or out.stat().st_size == 0:
            log.info("no frame taken", extra={"file": video.name, "ffmpeg": err})
            raise FrameError("ffmpeg read no frame")
        raw = out.read_bytes()
    return await asyncio.to_thread(_fit, raw)


def _fit(raw: bytes) -> bytes:
    """Scale a frame up to MIN_SHORT_SIDE on its short side when smaller; check it as any first frame."""
    with Image.open(io.BytesIO(raw)) as img:
        width, height = img.size
        short = min(width, height)
        if short >= MIN_SHORT_SIDE:
            data = raw
        else:
            scale = MIN_SHORT_SIDE / short
            size = (max(MIN_SHORT_SIDE, round(width * scale)), max(MIN_SHORT_SIDE, round(height * scale)))
            buf = io.BytesIO()
            img.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(buf, "PNG")
            data = buf.getvalue()
    check_image(data)
    return data
