"""wait_for_task: the poll schedule's real cost at the simulator, updates, Retry-After, callback wake-ups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bot.simulator import Simulator, SimulatorState
from bot.upstream import (
    PollSchedule,
    RetryPolicy,
    Task,
    TaskNotFound,
    TaskTimedOut,
    VideoAPIClient,
    VideoAPIError,
    wait_for_task,
)
from bot.upstream.retry import MAX_RETRY_AFTER
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


# ---- failed reads, deadlines, Retry-After caps (issue 10, items 3 and 4) ---------------------------------------


@pytest.mark.parametrize("kind", ["internal_error", "upstream_error", "bad_gateway", "malformed", "drop",
                                  "spend_limit_exceeded", "invalid_request", "invalid_api_key"])
async def test_a_failed_status_read_is_not_a_failed_task(kind: str, client: VideoAPIClient, sim_state: SimulatorState,
                                                         sleep: RecordingSleep) -> None:
    """Five reads in a row fail (after the client's own retries): the follower keeps going and gets the video."""
    sim_state.configure({"pending_seconds": 0, "processing_seconds": 60})
    task_id = await client.create_task(prompt="p", duration=4, aspect_ratio="16:9")
    sim_state.inject(kind, "poll", count=8)  # 8 refused requests: at most 8 failed reads in a row, fewer than 12
    sleep.clock = sim_state.clock
    task = await wait_for_task(client, task_id, schedule=PollSchedule(steps=(5,), cap=5), sleep=sleep,
                               clock=sim_state.clock.now, read_failures=RetryPolicy(max_attempts=12, base_delay=1,
                                                                                    max_delay=4, jitter=0))
    assert task.status == "completed"


async def test_a_lasting_run_of_failed_reads_ends_the_wait(client: VideoAPIClient, sim_state: SimulatorState,
                                                           sleep: RecordingSleep) -> None:
    sim_state.configure({"pending_seconds": 0, "processing_seconds": 10_000})
    task_id = await client.create_task(prompt="p", duration=4, aspect_ratio="16:9")
    sim_state.inject("upstream_error", "poll", count=10_000)
    seen: list[int] = []
    with pytest.raises(VideoAPIError) as caught:
        await wait_for_task(client, task_id, schedule=PollSchedule(steps=(5,), cap=5), sleep=sleep,
                            on_read_failure=lambda exc, run: seen.append(run),
                            read_failures=RetryPolicy(max_attempts=3, base_delay=1, max_delay=4, jitter=0))
    assert caught.value.code == "upstream_error"
    assert seen == [1, 2, 3]
    assert len(sim_state.requests_to("/v1/tasks/")) == 3  # 503 is not retried by the client itself


async def test_task_not_found_ends_the_wait_at_once(client: VideoAPIClient, sleep: RecordingSleep) -> None:
    with pytest.raises(TaskNotFound):
        await wait_for_task(client, "no-such-task", schedule=PollSchedule(steps=(5,), cap=5), sleep=sleep)


@pytest.mark.parametrize("status", ["processing", "unknown_status"])
async def test_a_task_that_never_finishes_is_given_up_at_the_deadline(
        status: str, client: VideoAPIClient, sim_state: SimulatorState, sleep: RecordingSleep) -> None:
    """Processing (or a status the docs never mention) for days: polling stops at the deadline, not never."""
    sim_state.configure({"pending_seconds": 0, "processing_seconds": 10 * 24 * 3600})
    task_id = await client.create_task(prompt="p", duration=4, aspect_ratio="16:9")
    if status == "unknown_status":
        sim_state.inject("unknown_status", "poll", count=100_000)
    sleep.clock = sim_state.clock
    start = sim_state.clock.now()
    with pytest.raises(TaskTimedOut):
        await wait_for_task(client, task_id, sleep=sleep, clock=sim_state.clock.now, deadline=start + 12 * 3600)
    waited = sim_state.clock.now() - start
    assert 12 * 3600 <= waited <= 12 * 3600 + 1  # stopped at the deadline, not a poll interval later
    assert len(sim_state.requests_to("/v1/tasks/")) <= 12 * 3600 / 120 + 30  # the frugal schedule all along


async def test_every_retry_after_is_capped(session: aiohttp.ClientSession, simulator: Simulator,
                                           sim_state: SimulatorState, sleep: RecordingSleep) -> None:
    api = VideoAPIClient(session, base_url=simulator.base_url, api_key=KEY, retry=RetryPolicy(max_attempts=1),
                         sleep=sleep)
    sim_state.configure({"pending_seconds": 0, "processing_seconds": 10})
    task_id = await api.create_task(prompt="p", duration=4, aspect_ratio="16:9")
    sim_state.inject("rate_limit_exceeded", "poll", count=1, retry_after=10**9)
    sim_state.inject("internal_error", "poll", count=1, retry_after=10**9)
    task = await wait_for_task(api, task_id, schedule=PollSchedule(steps=(5,), cap=5), sleep=sleep)
    assert task.status == "completed"
    assert max(sleep.delays) == MAX_RETRY_AFTER
