"""Make an oversize video fit an upload limit by re-encoding it with ffmpeg, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import imageio_ffmpeg

log = logging.getLogger(__name__)

AUDIO_KBPS = 64
MIN_VIDEO_KBPS = 150  # below this Sora's output turns to mush: post a link instead


async def probe_duration(path: Path, ffmpeg: str | None = None) -> float | None:
    """Read a video's duration from ffmpeg's banner (no ffprobe ships with imageio-ffmpeg)."""
    proc = await asyncio.create_subprocess_exec(
        ffmpeg or imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    for raw in err.decode(errors="replace").splitlines():
        line = raw.strip()
        if line.startswith("Duration:"):
            stamp = line.split(",")[0].split()[1]
            with contextlib.suppress(ValueError):
                h, m, s = stamp.split(":")
                return int(h) * 3600 + int(m) * 60 + float(s)
    return None


def fitted_path(src: Path) -> Path:
    """Where `fit_to_size` writes its smaller copy of `src` (so callers can clean it up)."""
    return src.with_name(src.stem + ".fit.mp4")


async def run_ffmpeg(args: list[str], timeout: float) -> tuple[int, str] | None:
    """Run ffmpeg (its own binary, from imageio-ffmpeg) with a time bound: (exit code, stderr), None on timeout."""
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return proc.returncode or 0, err.decode(errors="replace")[-300:]


async def fit_to_size(src: Path, limit: int, *, fallback_duration: float, timeout: float = 600.0) -> Path | None:
    """Re-encode `src` so it is at most `limit` bytes.

    Returns:
        The smaller file (beside `src`), or None when no watchable encode fits and a link is better.
    """
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    duration = await probe_duration(src, ffmpeg) or fallback_duration
    dest = fitted_path(src)
    for headroom in (0.92, 0.80):
        budget_kbps = int(limit * 8 * headroom / 1000 / max(duration, 0.5)) - AUDIO_KBPS
        if budget_kbps < MIN_VIDEO_KBPS:
            return None
        args = [
            ffmpeg, "-y", "-hide_banner", "-loglevel", "error", "-i", str(src),
            "-c:v", "libx264", "-preset", "veryfast", "-b:v", f"{budget_kbps}k",
            "-maxrate", f"{budget_kbps}k", "-bufsize", f"{budget_kbps * 2}k",
            "-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k", "-movflags", "+faststart", str(dest),
        ]
        result = await run_ffmpeg(args, timeout)
        if result is None:
            log.warning("re-encode timed out", extra={"file": src.name})
            return None
        code, err = result
        if code != 0:
            log.warning("re-encode failed", extra={"file": src.name, "ffmpeg": err})
            return None
        size = dest.stat().st_size
        if size <= limit:
            log.info("re-encoded to fit", extra={"file": src.name, "bytes": size, "limit": limit})
            return dest
    dest.unlink(missing_ok=True)
    return None
