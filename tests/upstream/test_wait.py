"""wait_for_task: the poll schedule's real cost at the simulator, updates, Retry-After, callback wake-ups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bot.simulator import Simulator, SimulatorState
from bot.upstream import PollSchedule, RetryPolicy, Task, VideoAPIClient, wait_for_task
from tests.simulator_fixtures import KEY, RecordingSleep


@pytest.mark.parametrize(("minutes", "most"), [(10, 15), (60, 45)])
async def test_polls_for_a_long_task(minutes: int, most: int, client: VideoAPIClient, sim_state: SimulatorState,
                                     sleep: RecordingSleep) -> None:
    sim_state.configure({"pending_seconds": 5, "processing_seconds": minutes * 60 - 5})
    task_id = await client.create_task(prompt="p", duration=4, aspect_ratio="16:9")
    task = await wait_for_task(client, task_id, schedule=PollSchedule(), sleep=sleep)
    assert task.status == "completed"
    polls = len(sim_state.requests_to("/v1/tasks/"))
    assert polls <= most
    assert sum(sleep.delays) >= minutes * 60  # it really waited the task out
    assert sum(sleep.delays) - minutes * 60 <= PollSchedule().cap  # and noticed within one poll interval


async def test_on_update_only_on_change(client: VideoAPIClient, sim_state: SimulatorState,
                                        sleep: RecordingSleep) -> None:
    sim_state.configure({"pending_seconds": 2, "processing_seconds": 20, "progress": "null"})
    seen: list[tuple[str, float | None]] = []

    async def on_update(task: Task) -> None:
        seen.append((task.status, task.progress))

    task_id = await client.create_task(prompt="p", duration=4, aspect_ratio="16:9")
    schedule = PollSchedule(steps=(1,), cap=1)
    task = await wait_for_task(client, task_id, schedule=schedule, sleep=sleep, on_update=on_update, poll_first=True)
    assert task.is_terminal
    assert seen == [("pending", None), ("processing", None), ("completed", None)]
    assert len(sim_state.requests_to("/v1/tasks/")) > 3


async def test_rate_limited_polls_wait_retry_after(session: aiohttp.ClientSession, simulator: Simulator,
                                                   sim_state: SimulatorState, sleep: RecordingSleep) -> None:
    api = VideoAPIClient(session, base_url=simulator.base_url, api_key=KEY, retry=RetryPolicy(max_attempts=1),
                         sleep=sleep)
    sim_state.configure({"pending_seconds": 0, "processing_seconds": 10})
    task_id = await api.create_task(prompt="p", duration=4, aspect_ratio="16:9")
    sim_state.inject("rate_limit_exceeded", "poll", count=2, retry_after=40)
    task = await wait_for_task(api, task_id, schedule=PollSchedule(steps=(5,), cap=5), sleep=sleep)
    assert task.status == "completed"
    assert sleep.delays[:3] == [5, 40, 40]


@pytest.fixture
async def hook() -> AsyncIterator[tuple[str, list[dict[str, str]], asyncio.Event]]:
    """A callback receiver that records headers and wakes the follower, as the bot's does."""
    received: list[dict[str, str]] = []
    wake = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        await request.json()
        received.append(dict(request.headers))
        wake.set()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/cb/{token}", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/cb/secret-token", received, wake
    await runner.cleanup()


async def test_callback_wakes_the_follower(client: VideoAPIClient, sim_state: SimulatorState,
                                           hook: tuple[str, list[dict[str, str]], asyncio.Event]) -> None:
    url, received, wake = hook
    sim_state.configure({"pending_seconds": 0.05, "processing_seconds": 0.2, "speed": 1.0})
    task_id = await client.create_task(prompt="p", duration=4, aspect_ratio="16:9", callback_url=url)
    hour = PollSchedule(steps=(3600,), cap=3600)  # without the callback this would take an hour
    async with asyncio.timeout(5):
        task = await wait_for_task(client, task_id, schedule=hour, sleep=asyncio.sleep, wake=wake)
    assert task.status == "completed"
    assert received[0]["X-Event"] == "task.completed" and received[0]["X-Task-Id"] == task_id
    assert len(sim_state.requests_to("/v1/tasks/")) == 1
