"""The job runner on its own: a recording Notifier (no chat platform), a real SQLite database in tmp, and the
video API simulator over real HTTP. One clock for the simulator, the database and the runner, moved by the
runner's own sleeps, so a ten-minute render takes milliseconds and every wait is deterministic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from bot.jobs.notifier import Delivery, DeliveryDelayed, Notifier, StatusUpdate, Undeliverable
from bot.jobs.runner import JobRunner, RunnerSettings
from bot.simulator import SimClock, Simulator, SimulatorState
from bot.upstream import RetryPolicy, VideoAPIClient
from bot.upstream.retry import PollSchedule
from storage.db import Database
from storage.models import Job, NewJob

KEY = "sk-test-key-0123456789"
GUILD, CHANNEL, USER = 1001, 500, 11
CREATES = "/v1/videos/generations"


@dataclass
class RecordingNotifier:
    """Implements the runner's Notifier protocol by recording each call; `delivery_errors` are raised, in order,
    by the next deliveries (as a chat platform in trouble would), before they succeed."""

    statuses: list[StatusUpdate] = field(default_factory=list)
    deliveries: list[tuple[str, str]] = field(default_factory=list)  # (kind, job id) of each delivery asked for
    files: list[int] = field(default_factory=list)  # sizes of the files actually posted
    failures: list[tuple[str, str]] = field(default_factory=list)  # (job id, message) of each failure notice
    delivery_errors: list[Exception] = field(default_factory=list)
    limit: int = 10 * 1024 * 1024

    async def show_status(self, job: Job, update: StatusUpdate) -> None:
        self.statuses.append(update)

    async def upload_limit(self, job: Job) -> int:
        return self.limit

    async def deliver_file(self, job: Job, video: Path) -> Delivery:
        self.deliveries.append(("file", job.id))
        if self.delivery_errors:
            raise self.delivery_errors.pop(0)
        self.files.append(video.stat().st_size)
        return Delivery(f"https://chat.example/{job.id}", "channel")

    async def deliver_link(self, job: Job, url: str, expires_at: float | None) -> Delivery:
        self.deliveries.append(("link", job.id))
        if self.delivery_errors:
            raise self.delivery_errors.pop(0)
        return Delivery(url, "channel")

    async def find_delivery(self, job: Job) -> Delivery | None:
        return None

    async def announce_failure(self, job: Job, message: str) -> None:
        self.failures.append((job.id, message))

    def states(self) -> list[str]:
        return [u.state for u in self.statuses]

    def notes(self) -> list[str]:
        return [u.note for u in self.statuses if u.note]


@dataclass
class Rig:
    runner: JobRunner
    db: Database
    sim: Simulator
    notifier: RecordingNotifier
    clock: SimClock

    async def run_one(self, cost: int = 100, duration: int = 4) -> Job:
        """Accept a job as the flow does (row and hold together), drive it to its end, return the final row."""
        job = await self.db.jobs.create_with_hold(NewJob(
            guild_id=GUILD, channel_id=CHANNEL, user_id=USER, prompt="a red fox in the snow", duration=duration,
            cost=cost))
        self.runner.launch(job)
        await self.runner.wait_idle(timeout=20)
        final = await self.db.jobs.get(job.id)
        assert final is not None
        return final

    async def kinds(self, job: Job) -> list[str]:
        return sorted(await self.db.ledger.for_job(job.id))

    def creates(self) -> int:
        return len(self.sim.state.requests_to(CREATES, "POST"))


class ClockedSleep:
    """An instant sleep that moves the shared clock by what was asked (and lets other tasks run)."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.clock.advance(max(seconds, 0.0))
        await asyncio.sleep(0)


async def make_rig(tmp_path: Path, settings: RunnerSettings | None = None) -> AsyncIterator[Rig]:
    clock = SimClock(speed=0.0)
    sleep = ClockedSleep(clock)
    state = SimulatorState(clock=clock, pending_seconds=5.0, processing_seconds=60.0)
    db = await Database.open(tmp_path / "bot.db", clock=clock)
    notifier = RecordingNotifier()
    protocol_check: Notifier = notifier  # the recording notifier is a Notifier, as the runner expects
    try:
        async with Simulator(state, tick=0.01) as sim, aiohttp.ClientSession() as session:
            api = VideoAPIClient(session, base_url=sim.base_url, api_key=KEY, sleep=sleep,
                                 retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02))
            runner = JobRunner(db=db, api=api, notifier=protocol_check, clock=clock, sleep=sleep,
                               schedule=PollSchedule(), settings=settings or RunnerSettings(video_dir=tmp_path / "v"))
            try:  # not runner.start(): its background loops would spin the shared clock; launch() is enough
                yield Rig(runner, db, sim, notifier, clock)
            finally:
                await runner.stop()
    finally:
        await db.close()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async for made in make_rig(tmp_path):
        yield made


async def test_happy_path_delivers_once_and_charges_once(rig: Rig) -> None:
    job = await rig.run_one()
    assert job.state == "delivered", (job.error_code, job.error_message)
    assert await rig.kinds(job) == ["charge", "hold"]
    assert rig.creates() == 1
    assert rig.notifier.deliveries == [("file", job.id)] and rig.notifier.files and rig.notifier.files[0] > 0
    assert job.delivered_message_url == f"https://chat.example/{job.id}"
    states = rig.notifier.states()
    assert states[0] == "submitting" and states[-1] == "delivered" and "running" in states
    assert rig.notifier.statuses[-1].final and "100 credits charged" in (rig.notifier.statuses[-1].note or "")
    assert rig.notifier.failures == []
    assert (await rig.db.ledger.balance(GUILD, USER)).held == 0
    assert await rig.db.ledger.verify() == []


async def test_a_failed_task_is_refunded_with_the_providers_reason(rig: Rig) -> None:
    rig.sim.state.configure({"fail_next": 1})
    job = await rig.run_one()
    assert job.state == "failed"
    assert await rig.kinds(job) == ["hold", "release"]
    assert rig.notifier.deliveries == []
    [(failed_id, message)] = rig.notifier.failures
    assert failed_id == job.id and "rewording" in message and "100 credits were refunded" in message
    assert rig.notifier.statuses[-1].state == "failed" and rig.notifier.statuses[-1].final
    assert await rig.db.ledger.verify() == []


async def test_a_lost_create_answer_is_refunded_without_a_second_create(rig: Rig) -> None:
    rig.sim.state.inject("lost_answer", "create")
    job = await rig.run_one()
    assert (job.state, job.error_code) == ("failed", "create_unconfirmed")
    assert rig.creates() == 1  # the upstream made a task; sending it again could pay for a second one
    assert len(rig.sim.state.tasks) == 1
    assert await rig.kinds(job) == ["hold", "release"]
    [(_, message)] = rig.notifier.failures
    assert "paying twice" in message


async def test_a_task_that_never_finishes_is_given_up_at_job_timeout(tmp_path: Path) -> None:
    settings = RunnerSettings(video_dir=tmp_path / "v", job_timeout=600.0)
    async for rig in make_rig(tmp_path, settings):
        rig.sim.state.configure({"processing_seconds": 7200.0})
        job = await rig.run_one()
        assert (job.state, job.error_code) == ("failed", "job_timeout")
        assert await rig.kinds(job) == ["hold", "release"]
        assert rig.creates() == 1
        [(_, message)] = rig.notifier.failures
        assert "in time" in message


async def test_a_delivery_delayed_by_the_platform_is_posted_again_and_charged_once(rig: Rig) -> None:
    rig.notifier.delivery_errors = [DeliveryDelayed(retry_after=3.0)]
    job = await rig.run_one()
    assert job.state == "delivered", (job.error_code, job.error_message)
    assert rig.notifier.deliveries == [("file", job.id), ("file", job.id)]
    assert any("keep trying" in note for note in rig.notifier.notes())
    assert await rig.kinds(job) == ["charge", "hold"]
    assert rig.creates() == 1  # delivery trouble never reaches the upstream again
    assert rig.notifier.failures == []


async def test_an_undeliverable_video_is_refunded(rig: Rig) -> None:
    rig.notifier.delivery_errors = [Undeliverable("every place refused")]
    job = await rig.run_one()
    assert (job.state, job.error_code) == ("failed", "undeliverable")
    assert rig.notifier.deliveries == [("file", job.id)]  # refused for good: not asked again
    assert await rig.kinds(job) == ["hold", "release"]
    [(_, message)] = rig.notifier.failures
    assert "couldn't post the video" in message and "refunded" in message
    assert await rig.db.ledger.verify() == []
