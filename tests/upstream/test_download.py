"""Downloads: streamed to disk, bounded in size and time, never with the API key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from bot.simulator import SimulatorState
from bot.upstream import DownloadError, VideoAPIClient
from tests.simulator_fixtures import finish


async def finished_url(client: VideoAPIClient, state: SimulatorState, **kw: object) -> str:
    task_id = await client.create_task(prompt="p", duration=4, aspect_ratio="16:9")
    await finish(state, client, task_id)
    return (await client.get_task(task_id)).video_urls[0]


async def test_download_streams_a_real_mp4_without_the_key(client: VideoAPIClient, sim_state: SimulatorState,
                                                            tmp_path: Path) -> None:
    url = await finished_url(client, sim_state)
    dest = tmp_path / "v.mp4"
    size = await client.download(url, dest, max_bytes=10_000_000, timeout=30)
    data = dest.read_bytes()
    assert size == len(data) > 1000 and data[4:8] == b"ftyp"
    (get,) = sim_state.requests_to("/files/")
    assert not get.authorized
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]  # no temporary file left behind


async def test_content_length_over_the_bound_is_refused_up_front(client: VideoAPIClient, sim_state: SimulatorState,
                                                                tmp_path: Path) -> None:
    sim_state.video_bytes = 50_000_000
    url = await finished_url(client, sim_state)
    with pytest.raises(DownloadError) as caught:
        await client.download(url, tmp_path / "v.mp4", max_bytes=1_000_000, timeout=30)
    assert caught.value.reason == "too_large" and not caught.value.retryable
    assert list(tmp_path.iterdir()) == []


async def test_padded_video_keeps_its_size(client: VideoAPIClient, sim_state: SimulatorState, tmp_path: Path) -> None:
    sim_state.video_bytes = 3_000_000
    url = await finished_url(client, sim_state)
    assert await client.download(url, tmp_path / "v.mp4", max_bytes=3_000_000, timeout=30) == 3_000_000


@pytest.fixture
async def chunked_host() -> AsyncIterator[str]:
    """A host that streams without Content-Length, so only the running count can stop it."""

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(100):
            await resp.write(b"\0" * 65536)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/v.mp4", endless)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/v.mp4"
    await runner.cleanup()


async def test_size_bound_while_streaming(client: VideoAPIClient, chunked_host: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as caught:
        await client.download(chunked_host, tmp_path / "v.mp4", max_bytes=1_000_000, timeout=30)
    assert caught.value.reason == "too_large"
    assert list(tmp_path.iterdir()) == []


async def test_expired_link(client: VideoAPIClient, sim_state: SimulatorState, tmp_path: Path) -> None:
    sim_state.link_expiry = 60
    url = await finished_url(client, sim_state)
    sim_state.clock.advance(61)
    with pytest.raises(DownloadError) as caught:
        await client.download(url, tmp_path / "v.mp4", max_bytes=10_000_000, timeout=30)
    assert (caught.value.reason, caught.value.status) == ("expired", 403)


async def test_unknown_file_is_expired(client: VideoAPIClient, sim_state: SimulatorState, tmp_path: Path) -> None:
    url = await finished_url(client, sim_state)
    with pytest.raises(DownloadError) as caught:
        await client.download(url.replace("/files/", "/files/x"), tmp_path / "v.mp4", max_bytes=10**7, timeout=30)
    assert caught.value.reason == "expired"


async def test_wrong_content_type(client: VideoAPIClient, sim_state: SimulatorState, tmp_path: Path) -> None:
    url = await finished_url(client, sim_state)
    sim_state.inject("wrong_content_type", "video")
    with pytest.raises(DownloadError) as caught:
        await client.download(url, tmp_path / "v.mp4", max_bytes=10_000_000, timeout=30)
    assert caught.value.reason == "bad_content_type"


async def test_time_bound(client: VideoAPIClient, sim_state: SimulatorState, tmp_path: Path) -> None:
    url = await finished_url(client, sim_state)
    sim_state.inject("hang", "video")
    with pytest.raises(DownloadError) as caught:
        await client.download(url, tmp_path / "v.mp4", max_bytes=10_000_000, timeout=0.3)
    assert caught.value.reason == "timeout" and caught.value.retryable


async def test_dropped_download_is_a_network_error(client: VideoAPIClient, sim_state: SimulatorState,
                                                   tmp_path: Path) -> None:
    url = await finished_url(client, sim_state)
    sim_state.inject("drop", "video", count=2)
    with pytest.raises(DownloadError) as caught:
        await client.download(url, tmp_path / "v.mp4", max_bytes=10_000_000, timeout=30)
    assert caught.value.reason == "network" and caught.value.retryable


@pytest.mark.parametrize("url", ["ftp://example.com/v.mp4", "file:///etc/passwd", "not a url", "http:///v.mp4"])
async def test_only_http_urls(client: VideoAPIClient, url: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as caught:
        await client.download(url, tmp_path / "v.mp4", max_bytes=10, timeout=1)
    assert caught.value.reason == "bad_url"


async def test_write_failure_is_disk(client: VideoAPIClient, sim_state: SimulatorState, tmp_path: Path) -> None:
    url = await finished_url(client, sim_state)
    with pytest.raises(DownloadError) as caught:
        await client.download(url, tmp_path / "missing-dir" / "v.mp4", max_bytes=10_000_000, timeout=30)
    assert caught.value.reason == "disk"
