"""Oversize videos are re-encoded below the upload limit, and still play."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import imageio_ffmpeg

from bot.video_fit import fit_to_size, probe_duration

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def make_video(path: Path, seconds: int = 4, bitrate: str = "8M") -> None:
    subprocess.run(
        [FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-b:v", bitrate, "-c:a", "aac", "-shortest", str(path)],
        check=True, timeout=120,
    )


def decodes(path: Path) -> bool:
    proc = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True, timeout=120,
                          check=False)
    return proc.returncode == 0 and not proc.stderr.strip()


async def test_fits_under_limit_and_plays(tmp_path: Path) -> None:
    src = tmp_path / "big.mp4"
    await asyncio.to_thread(make_video, src)
    size = src.stat().st_size
    limit = size // 3
    assert abs((await probe_duration(src) or 0) - 4) < 0.2
    out = await fit_to_size(src, limit, fallback_duration=4)
    assert out is not None
    assert out.stat().st_size <= limit
    assert decodes(out)


async def test_impossible_limit_gives_none(tmp_path: Path) -> None:
    src = tmp_path / "big.mp4"
    await asyncio.to_thread(make_video, src, 4, "2M")
    assert await fit_to_size(src, 20_000, fallback_duration=4) is None
