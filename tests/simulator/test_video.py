"""The simulator's videos: real MP4s of the asked shape and length, padded sizes still playable, links expire."""

from __future__ import annotations

import asyncio
import re
import struct
from pathlib import Path

import aiohttp
import imageio_ffmpeg
import pytest

from bot.simulator import Simulator, SimulatorState
from bot.simulator.video import VideoCache, free_box, padded_size
from bot.upstream import VideoAPIClient
from tests.simulator_fixtures import finish


async def probe(path: Path) -> tuple[str, str]:
    """Decode the whole file with ffmpeg; return (its stream summary, decode errors)."""
    proc = await asyncio.create_subprocess_exec(
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-v", "info", "-i", str(path), "-f", "null", "-",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    text = err.decode()
    errors = "\n".join(line for line in text.splitlines() if "rror" in line or "nvalid" in line)
    return text, errors


def test_free_box_headers() -> None:
    assert free_box(8) == struct.pack(">I4s", 8, b"free")
    assert free_box(2**32) == struct.pack(">I4sQ", 1, b"free", 2**32)
    with pytest.raises(ValueError, match="8 bytes"):
        free_box(7)
    assert padded_size(1000, None) == 1000
    assert padded_size(1000, 1007) == 1000  # no room for a box: served as is
    assert padded_size(1000, 1008) == 1008


@pytest.mark.parametrize(("duration", "aspect", "size"), [(4, "9:16", "180x320"), (8, "16:9", "320x180")])
async def test_generated_video(duration: int, aspect: str, size: str, tmp_path: Path) -> None:
    path = await VideoCache(tmp_path).get(duration, aspect)
    assert path.read_bytes()[4:8] == b"ftyp"
    info, errors = await probe(path)
    assert size in info and errors == ""
    match = re.search(r"Duration: 00:00:(\d+\.\d+)", info)
    assert match and abs(float(match.group(1)) - duration) < 0.5


async def test_padded_download_is_playable(client: VideoAPIClient, sim_state: SimulatorState, tmp_path: Path) -> None:
    sim_state.video_bytes = 5_000_000
    task_id = await client.create_task(prompt="p", duration=4, aspect_ratio="16:9")
    await finish(sim_state, client, task_id)
    url = (await client.get_task(task_id)).video_urls[0]
    dest = tmp_path / "big.mp4"
    assert await client.download(url, dest, max_bytes=6_000_000, timeout=30) == 5_000_000
    info, errors = await probe(dest)
    assert "Video: h264" in info or "Video: mpeg4" in info
    assert errors == ""


async def test_expired_link_looks_like_a_bucket(session: aiohttp.ClientSession, client: VideoAPIClient,
                                                simulator: Simulator, sim_state: SimulatorState) -> None:
    sim_state.link_expiry = 10
    task_id = await client.create_task(prompt="p", duration=4, aspect_ratio="16:9")
    await finish(sim_state, client, task_id)
    url = (await client.get_task(task_id)).video_urls[0]
    async with session.get(url) as resp:
        assert (resp.status, resp.content_type) == (200, "video/mp4")
        assert int(resp.headers["Content-Length"]) > 1000
    sim_state.clock.advance(11)
    async with session.get(url) as resp:
        assert resp.status == 403 and resp.content_type == "application/xml"
        assert "<Code>AccessDenied</Code>" in await resp.text()
