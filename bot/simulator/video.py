"""Real, playable MP4s for the simulator: made once per (duration, aspect) by ffmpeg, padded on the fly.

Padding appends a top-level MP4 `free` box, which players skip, so a file of any size stays playable
without ever holding it in memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

log = logging.getLogger(__name__)

SIZES = {"16:9": (320, 180), "9:16": (180, 320)}
CHUNK = 256 * 1024


class VideoError(RuntimeError):
    """ffmpeg could not make the test video."""


def default_cache_dir() -> Path:
    """A per-user directory under the system temp dir, so runs share the few generated files."""
    return Path(tempfile.gettempdir()) / f"sora-bot-sim-videos-{os.getuid() if hasattr(os, 'getuid') else 0}"


class VideoCache:
    """Generate each test video once (off the event loop) and reuse it."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_cache_dir()
        self._locks: dict[tuple[int, str], asyncio.Lock] = {}

    async def get(self, duration: int, aspect_ratio: str) -> Path:
        """Return the path of a playable MP4 of `duration` seconds in `aspect_ratio`."""
        key = (int(duration), aspect_ratio if aspect_ratio in SIZES else "16:9")
        path = self.directory / f"testsrc-{key[0]}s-{key[1].replace(':', 'x')}.mp4"
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if not path.is_file() or path.stat().st_size == 0:
                await _generate(path, *key)
        return path


async def _generate(path: Path, duration: int, aspect_ratio: str) -> None:
    """Run ffmpeg's test source into `path` (via a temporary name, so a crash leaves no half file)."""
    import imageio_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = SIZES[aspect_ratio]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    source = f"testsrc=size={width}x{height}:rate=12:duration={duration}"
    last_error = ""
    for codec in (["-c:v", "libx264", "-preset", "ultrafast"], ["-c:v", "mpeg4"]):
        proc = await asyncio.create_subprocess_exec(
            imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", source, *codec, "-pix_fmt", "yuv420p", "-movflags", "+faststart",
            "-f", "mp4", str(tmp),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode == 0 and tmp.is_file() and tmp.stat().st_size > 0:
            tmp.replace(path)
            log.info("generated test video %s", path)
            return
        last_error = err.decode("utf-8", "replace").strip()[-300:]
    tmp.unlink(missing_ok=True)
    raise VideoError(f"ffmpeg failed: {last_error}")


def free_box(padding: int) -> bytes:
    """The header of an MP4 `free` box that occupies `padding` bytes in total (header included)."""
    if padding < 8:
        raise ValueError("a free box needs at least 8 bytes")
    if padding <= 0xFFFFFFFF:
        return struct.pack(">I4s", padding, b"free")
    if padding < 16:
        raise ValueError("a 64-bit free box needs at least 16 bytes")
    return struct.pack(">I4sQ", 1, b"free", padding)


def padded_size(base: int, target: int | None) -> int:
    """The size actually served: `target` when a valid free box fits, else the file as it is."""
    if target is None or target < base + 8:
        return base
    return target


async def stream_padded(path: Path, total: int) -> AsyncIterator[bytes]:
    """Yield the MP4 then a `free` box of zeros up to `total` bytes, a chunk at a time."""
    data = await asyncio.to_thread(path.read_bytes)  # small (a few hundred kB at most)
    yield data
    padding = total - len(data)
    if padding <= 0:
        return
    header = free_box(padding)
    yield header
    left = padding - len(header)
    zeros = bytes(CHUNK)
    while left > 0:
        step = min(left, CHUNK)
        yield zeros if step == CHUNK else bytes(step)
        left -= step
