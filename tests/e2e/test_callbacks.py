"""The callback server end to end: a real callback wakes the job at once even with a slow poll schedule;
forged, replayed and oversized callbacks change nothing, because a callback only makes the bot re-read
the task from the upstream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from storage.models import Job
from tests.e2e.harness import InProcessBot, World, running_bot, video_posts
from tests.helpers import free_port


@pytest.fixture
async def bot(world: World) -> AsyncIterator[InProcessBot]:
    """The bot with its callback server on a free loopback port and poll times far beyond any test (500 s, ...)."""
    port = free_port()
    world.extra_env.update({
        "CALLBACK_PUBLIC_URL": f"http://127.0.0.1:{port}", "CALLBACK_HOST": "127.0.0.1",
        "CALLBACK_PORT": str(port), "SORA_TIME_SCALE": "100",  # the first scheduled poll: 500 s after submit
    })
    async with running_bot(world) as runner:
        yield runner


def base_url(world: World) -> str:
    return world.extra_env["CALLBACK_PUBLIC_URL"]


async def post(url: str, body: Any = None, *, data: Any = None, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as session, session.post(url, json=body, data=data, headers=headers) as response:
        await response.read()
        return response.status


def polls(world: World) -> int:
    return len(world.sim.state.requests_to("/v1/tasks/", "GET"))


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    async with asyncio.timeout(timeout):
        while not (value := predicate()):
            await asyncio.sleep(0.01)
    assert value, what
    return value


async def running_job(world: World, bot: InProcessBot) -> Job:
    inter = await world.generate()
    assert (await inter.wait_response(3)).type == 5
    return await bot.wait_job(lambda j: j.state == "running", timeout=10)


def callbacks_received(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The callback server's own record of each callback it accepted (`woke`: whether a follower was waiting)."""
    return [r for r in caplog.records if r.name == "bot.callbacks" and r.getMessage() == "callback received"]


async def test_callback_wakes_the_job_and_costs_exactly_one_poll(world: World, bot: InProcessBot,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """With the poll schedule stretched a hundredfold (first poll 500 s after submit), only the callback can get
    the video out: one callback, one status read, delivered. The latency is a benchmark's business
    (benchmarks/bench_polling.py), not this test's."""
    caplog.set_level(logging.INFO, logger="bot.callbacks")
    job = await running_job(world, bot)
    [done] = await bot.wait_finished(1, timeout=20)
    assert done.state == "delivered", done.error_message
    [callback] = world.sim.state.callbacks
    assert callback.status == 200 and callback.url == f"{base_url(world)}/callbacks/{job.callback_token}"
    [received] = callbacks_received(caplog)
    assert received.woke is True  # type: ignore[attr-defined]
    assert polls(world) == 1  # one status read per callback, none scheduled
    assert len(video_posts(world, job.id)) == 1


async def test_forged_callbacks_change_nothing(world: World, bot: InProcessBot,
                                              caplog: pytest.LogCaptureFixture) -> None:
    world.sim.state.configure({"processing_seconds": 1000})
    job = await running_job(world, bot)
    url = f"{base_url(world)}/callbacks/{job.callback_token}"
    task = world.sim.state.tasks[job.task_id or ""]
    lie = {"id": task.id, "status": "completed", "output": {"urls": ["http://127.0.0.1:9/evil.mp4"]}}
    caplog.set_level(logging.INFO, logger="bot.callbacks")
    before = polls(world)

    # Wrong paths: the same 404 whatever they look like, and the job is not even woken.
    for path in ("/callbacks/not-a-token", f"/callbacks/{job.callback_token[:-1]}", "/callbacks/",
                 f"/callback/{job.callback_token}", f"/callbacks/{job.callback_token}/x", "/"):
        assert await post(f"{base_url(world)}{path}", lie, headers={"X-Task-Id": task.id}) == 404, path
    # The right path naming another task.
    assert await post(url, lie, headers={"X-Task-Id": "another-task"}) == 404
    assert callbacks_received(caplog) == [] and polls(world) == before  # answered 404 before waking anyone

    # The right path with a false "completed": the bot asks the upstream, which says processing.
    assert await post(url, lie, headers={"X-Task-Id": task.id, "X-Event": "task.completed"}) == 200
    await until(lambda: polls(world) > before, 5, "the bot re-read the task")
    [woken] = callbacks_received(caplog)
    assert woken.woke is True  # type: ignore[attr-defined]
    assert (await bot.db.jobs.get(job.id)).state == "running"  # type: ignore[union-attr]
    assert video_posts(world, job.id) == [] and task.status in ("pending", "processing")
    assert not any("evil" in r.path for r in world.sim.state.requests)

    # Oversized bodies: 413, with or without a Content-Length.
    big = b"x" * (64 * 1024 + 1)
    assert await post(url, data=big, headers={"Content-Type": "application/json"}) == 413

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(80):
            yield b"y" * 1024

    assert await post(url, data=chunked()) == 413
    assert (await bot.db.jobs.get(job.id)).state == "running"  # type: ignore[union-attr]

    # The real completion still works afterwards: one more status read for its one callback, no other.
    world.sim.state.clock.advance(1000)
    [done] = await bot.wait_finished(1, timeout=20)
    assert done.state == "delivered" and len(video_posts(world, job.id)) == 1
    assert polls(world) == before + 2


async def test_replayed_callbacks_after_delivery_deliver_and_charge_nothing(
        world: World, bot: InProcessBot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.callbacks")
    job = await running_job(world, bot)
    [done] = await bot.wait_finished(1, timeout=20)
    assert done.state == "delivered"
    task = world.sim.state.tasks[job.task_id or ""]
    body = world.sim.state.task_json(task, world.sim.base_url)
    url = f"{base_url(world)}/callbacks/{job.callback_token}"
    before, seen = polls(world), len(callbacks_received(caplog))
    statuses = await asyncio.gather(*(post(url, body, headers={"X-Task-Id": task.id, "X-Event": "task.completed"})
                                      for _ in range(20)))
    assert set(statuses) <= {200, 404}, statuses
    # The server's record of each replay says no follower was woken, so nothing can come after it.
    replays = callbacks_received(caplog)[seen:]
    assert len(replays) == statuses.count(200) and not any(r.woke for r in replays)  # type: ignore[attr-defined]
    assert polls(world) == before
    assert len(video_posts(world, job.id)) == 1
    kinds = [r["kind"] for r in await bot.db.fetchall("SELECT kind FROM ledger WHERE job_id = ?", (job.id,))]
    assert kinds == ["hold", "charge"]
    assert await bot.db.ledger.verify() == []
