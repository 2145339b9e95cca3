"""`sora-bot generate | simulator | demo` run as real processes against a real simulator."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import imageio_ffmpeg
import pytest
from PIL import Image

from bot.cli import build_parser
from bot.simulator import Simulator, SimulatorState
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[1]


def env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SORA_", "DISCORD_", "CALLBACK_"))}
    return {**clean, "PYTHONPATH": str(ROOT), **extra}


async def run(*args: str, cwd: Path, environ: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=cwd, env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_friendly(err: str) -> None:
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("sora-bot: ")


@pytest.fixture
async def live_sim() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorState(pending_seconds=0.1, processing_seconds=0.6)) as sim:
        yield sim


async def playable(path: Path) -> bool:
    proc = await asyncio.create_subprocess_exec(
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "null", "-",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    return proc.returncode == 0 and not err.strip()


def test_parser_knows_the_verbs() -> None:
    args = build_parser().parse_args(["generate", "a cat", "--duration", "8", "--aspect-ratio", "9:16", "-o", "x.mp4"])
    assert (args.prompt, args.duration, args.aspect_ratio, args.output) == ("a cat", 8, "9:16", Path("x.mp4"))
    assert callable(args.func)
    assert build_parser().parse_args(["simulator", "--port", "9000"]).port == 9000
    assert build_parser().parse_args(["demo"]).output is None


async def test_demo_makes_a_playable_video_without_keys(tmp_path: Path) -> None:
    code, out, err = await run("demo", "-o", "demo.mp4", cwd=tmp_path, environ=env())
    assert code == 0, err
    video = tmp_path / "demo.mp4"
    assert out.strip() == str(video)
    assert video.read_bytes()[4:8] == b"ftyp" and video.stat().st_size > 1000
    assert await playable(video)
    assert "completed" in err and "Traceback" not in err


async def test_generate_against_the_simulator(tmp_path: Path, live_sim: Simulator) -> None:
    environ = env(SORA_API_KEY="sk-cli-test", SORA_API_BASE=live_sim.base_url, SORA_TIME_SCALE="0.05")
    code, out, err = await run("generate", "a red fox in snow", "--duration", "8", "--aspect-ratio", "9:16",
                               cwd=tmp_path, environ=environ)
    assert code == 0, err
    (task_id,) = live_sim.state.tasks
    video = tmp_path / f"sora-{task_id}.mp4"
    assert out.strip() == video.name and video.read_bytes()[4:8] == b"ftyp"
    (create,) = live_sim.state.requests_to("/v1/videos/generations")
    assert create.json["input"] == {"prompt": "a red fox in snow", "duration": 8, "aspect_ratio": "9:16"}
    assert "100%" in err
    assert not live_sim.state.requests_to("/files/")[0].authorized


async def test_generate_follows_the_bots_frugal_poll_schedule(tmp_path: Path) -> None:
    """A 60 s job costs 5 status reads, as in the bot (it cost 61 at one a second). Time runs 10x on both sides."""
    state = SimulatorState(pending_seconds=5, processing_seconds=55)
    state.speed = 10.0
    async with Simulator(state) as sim:
        environ = env(SORA_API_KEY="sk-cli-test", SORA_API_BASE=sim.base_url, SORA_TIME_SCALE="0.1")
        code, _, err = await run("generate", "a slow sunrise", cwd=tmp_path, environ=environ)
        assert code == 0, err
        reads = len(sim.state.requests_to("/v1/tasks/", "GET"))
    assert reads <= 6, reads
    assert "100%" in err


async def test_generate_keeps_following_through_failed_status_reads(tmp_path: Path, live_sim: Simulator) -> None:
    """A 503 (or any failed read) on GET /v1/tasks says nothing about the task: the video still arrives."""
    live_sim.state.inject("upstream_error", "poll", count=3)
    live_sim.state.inject("internal_error", "poll", count=4)
    environ = env(SORA_API_KEY="sk-cli-test", SORA_API_BASE=live_sim.base_url, SORA_TIME_SCALE="0.02")
    code, out, err = await run("generate", "a red fox in snow", cwd=tmp_path, environ=environ)
    assert code == 0, err
    (task_id,) = live_sim.state.tasks
    assert out.strip() == f"sora-{task_id}.mp4"


async def test_generate_never_resends_a_create_whose_answer_was_lost(tmp_path: Path, live_sim: Simulator) -> None:
    live_sim.state.inject("lost_answer", "create")
    environ = env(SORA_API_KEY="sk-cli-test", SORA_API_BASE=live_sim.base_url, SORA_TIME_SCALE="0.02")
    code, _, err = await run("generate", "a red fox in snow", cwd=tmp_path, environ=environ)
    assert code == 1
    assert_friendly(err)
    assert "not sending it again" in err
    assert len(live_sim.state.requests_to("/v1/videos/generations", "POST")) == 1


def make_image(path: Path, size: tuple[int, int]) -> Path:
    Image.new("RGB", size, (200, 50, 50)).save(path)
    return path


async def test_local_image_is_served_to_a_loopback_api(tmp_path: Path, live_sim: Simulator) -> None:
    image = make_image(tmp_path / "frame.png", (640, 360))
    environ = env(SORA_API_KEY="sk-cli-test", SORA_API_BASE=live_sim.base_url, SORA_TIME_SCALE="0.05")
    code, _, err = await run("generate", "it moves", "--image", str(image), "-o", "v.mp4", cwd=tmp_path,
                             environ=environ)
    assert code == 0, err
    (create,) = live_sim.state.requests_to("/v1/videos/generations")
    (url,) = create.json["input"]["image_urls"]
    assert url.startswith("http://127.0.0.1:") and url.endswith(".png")


async def test_bad_image_is_refused_before_any_upstream_call(tmp_path: Path, live_sim: Simulator) -> None:
    image = make_image(tmp_path / "tiny.png", (100, 100))
    environ = env(SORA_API_KEY="sk-cli-test", SORA_API_BASE=live_sim.base_url, SORA_TIME_SCALE="0.05")
    code, _, err = await run("generate", "x", "--image", str(image), cwd=tmp_path, environ=environ)
    assert code == 2
    assert_friendly(err)
    assert "300" in err and live_sim.state.requests == []


async def test_local_image_needs_a_url_for_a_remote_api(tmp_path: Path) -> None:
    image = make_image(tmp_path / "frame.jpg", (640, 360))
    environ = env(SORA_API_KEY="sk-cli-test", SORA_API_BASE="https://api.example.invalid")
    code, _, err = await run("generate", "x", "--image", str(image), cwd=tmp_path, environ=environ)
    assert code == 1
    assert_friendly(err)
    assert "URL" in err


async def test_missing_key_is_one_clear_line(tmp_path: Path) -> None:
    code, _, err = await run("generate", "x", cwd=tmp_path, environ=env())
    assert code == 2
    assert_friendly(err)
    assert "SORA_API_KEY" in err


async def test_upstream_refusal_is_one_friendly_line(tmp_path: Path, live_sim: Simulator) -> None:
    live_sim.state.inject("insufficient_credits", "create")
    environ = env(SORA_API_KEY="sk-cli-test", SORA_API_BASE=live_sim.base_url, SORA_TIME_SCALE="0.05")
    code, _, err = await run("generate", "x", cwd=tmp_path, environ=environ)
    assert code == 1
    assert_friendly(err)
    assert "out of credits" in err


async def test_failed_task_is_one_friendly_line(tmp_path: Path, live_sim: Simulator) -> None:
    live_sim.state.fail_next = 1
    environ = env(SORA_API_KEY="sk-cli-test", SORA_API_BASE=live_sim.base_url, SORA_TIME_SCALE="0.05")
    code, _, err = await run("generate", "x", cwd=tmp_path, environ=environ)
    assert code == 1
    assert_friendly(err)
    assert "prohibited content" in err


async def test_simulator_command_serves_and_takes_switches(tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "simulator", "--port", str(port), "--processing-seconds", "3",
        "--inject", "create:rate_limit_exceeded:2:5", cwd=tmp_path, env=env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            ready = (await proc.stdout.readline()).decode()
        assert f"http://127.0.0.1:{port}" in ready
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{port}"
            async with session.post(base + "/v1/videos/generations", json={"model": "sora-2"},
                                    headers={"Authorization": "Bearer sk-x"}) as resp:
                assert (resp.status, resp.headers["Retry-After"]) == (429, "5.0")
            async with session.post(base + "/_sim/control", json={"set": {"balance": 5}}) as resp:
                summary = await resp.json()
            assert summary["balance"] == 5 and summary["faults"][0]["count"] == 1
    finally:
        proc.terminate()
        async with asyncio.timeout(10):
            await proc.wait()
