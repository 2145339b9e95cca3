"""Two JobRunners on one PostgreSQL database (separate pools, separate recording notifiers) and the simulator,
in real time: a runner whose tasks stop abruptly (killed: its presence session gone; or hung: still "alive",
not renewing) loses its jobs to the other, which ends each once; the limits and FIFO hold across both; a
callback (poke) or a Cancel at one runner reaches the job the other drives.

A "process" here is a runner with its own Database pool and owner name; killing it cancels its tasks without
stop() (nothing given back, as with kill -9) and, for a kill, closes its presence session as the kernel
would close the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from bot.jobs.runner import JobRunner, RunnerSettings
from bot.simulator import Simulator, SimulatorState
from bot.upstream import RetryPolicy, VideoAPIClient
from bot.upstream.retry import PollSchedule
from storage.db import Database
from storage.models import Job, NewJob
from tests.jobs.test_runner import CREATES, KEY, RecordingNotifier

GUILD, CHANNEL = 1001, 500
LEASE = 2.0
FAST_POLLS = PollSchedule(steps=(0.1,), cap=0.1)


@dataclass
class Proc:
    runner: JobRunner
    db: Database
    notifier: RecordingNotifier


@dataclass
class Pair:
    a: Proc
    b: Proc
    sim: Simulator

    async def accept(self, at: Proc, user: int = 11, duration: int = 4) -> Job:
        """A job accepted at one process, as the flow does: row and hold, then launch() there."""
        job = await at.db.jobs.create_with_hold(NewJob(guild_id=GUILD, channel_id=CHANNEL, user_id=user,
                                                       prompt="a red fox in the snow", duration=duration,
                                                       cost=25 * duration))
        at.runner.launch(job)
        return job

    async def wait(self, job_id: str, predicate: Callable[[Job], bool], timeout: float = 20.0) -> Job:
        async with asyncio.timeout(timeout):
            while True:
                job = await self.a.db.jobs.get(job_id)
                if job is not None and predicate(job):
                    return job
                await asyncio.sleep(0.02)

    def creates(self) -> int:
        return len(self.sim.state.requests_to(CREATES, "POST"))


async def kill(proc: Proc, *, session_too: bool = True) -> None:
    """Stop a runner abruptly: its tasks end without giving anything back; with `session_too` its presence
    session closes as a killed process's socket does (otherwise it looks alive but renews nothing: hung)."""
    runner = proc.runner
    tasks = [*runner._tasks.values(), *runner._background]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    runner.claims.running = False  # it is gone: stop() must not give its leases back either
    presence = runner.claims._presence
    if session_too and presence is not None:
        await presence.close()


@contextlib.asynccontextmanager
async def pair(tmp_path: Path, pg_url: str, *, max_running: int = 20, poll: PollSchedule = FAST_POLLS,
               **sim: float) -> AsyncIterator[Pair]:
    state = SimulatorState(pending_seconds=0.05, processing_seconds=sim.pop("processing_seconds", 0.3))
    procs: list[Proc] = []
    async with Simulator(state, tick=0.01) as simulator, aiohttp.ClientSession() as session:
        api = VideoAPIClient(session, base_url=simulator.base_url, api_key=KEY,
                             retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02))
        try:
            for name in ("a", "b"):
                db = await Database.open(pg_url, clock=time.time)
                await db.guilds.update(GUILD, max_jobs_per_guild=100, max_jobs_per_member=50, cooldown_seconds=0,
                                       starting_credits=10_000)
                notifier = RecordingNotifier()
                settings = RunnerSettings(video_dir=tmp_path / name, max_running=max_running, lease_seconds=LEASE,
                                          claim_interval=0.2, queue_refresh=0.2, retry_base=0.01, retry_cap=0.05,
                                          process_name=f"test-{name}")
                runner = JobRunner(db=db, api=api, notifier=notifier, settings=settings, schedule=poll)
                procs.append(Proc(runner, db, notifier))
                await runner.start()
            yield Pair(procs[0], procs[1], simulator)
        finally:
            for proc in procs:
                await proc.runner.stop()
                await proc.db.close()


async def _settled_once(pair: Pair, job_id: str) -> Job:
    job = await pair.wait(job_id, lambda j: j.is_finished)
    assert job.state == "delivered", (job.error_code, job.error_message)
    assert sorted(await pair.a.db.ledger.for_job(job_id)) == ["charge", "hold"]
    assert await pair.a.db.ledger.verify() == []
    return job


@pytest.mark.parametrize("how", ["killed", "hung"])
async def test_a_job_whose_runner_dies_is_taken_over_and_delivered_once(tmp_path: Path, pg_url: str,
                                                                         how: str) -> None:
    async with pair(tmp_path, pg_url, processing_seconds=3.0) as p:
        job = await p.accept(p.a)
        running = await p.wait(job.id, lambda j: j.state == "running")
        assert running.owner == p.a.runner.owner and p.b.runner.driven == 0
        stopped_at = time.monotonic()
        await kill(p.a, session_too=how == "killed")
        taken = await p.wait(job.id, lambda j: j.owner == p.b.runner.owner)
        took = time.monotonic() - stopped_at
        assert taken.fence == 2 and taken.task_id == running.task_id
        # killed: its session is gone, so at the next claim pass; hung: once the lease has run out
        assert took < (1.0 if how == "killed" else LEASE + 1.0), took
        final = await _settled_once(p, job.id)
        assert final.delivered_message_url and p.b.notifier.deliveries == [("file", job.id)]
        assert p.a.notifier.deliveries == [] and p.creates() == 1  # the same upstream task, followed on
        print(f"FAILOVER-FIGURES {how}: taken over after {took:.2f} s (lease {LEASE} s)")


async def test_a_job_killed_after_its_create_is_never_created_again(tmp_path: Path, pg_url: str) -> None:
    """Killed with the create's answer outstanding: the other runner finds create_inflight in the row and
    waits for the task's callback (none configured here), so it refunds instead of paying for a second task."""
    async with pair(tmp_path, pg_url) as p:
        p.sim.state.inject("hang", "create")
        job = await p.accept(p.a)
        await p.wait(job.id, lambda j: j.create_inflight == 1)
        await kill(p.a)
        final = await p.wait(job.id, lambda j: j.is_finished)
        assert (final.state, final.error_code, final.owner) == ("failed", "create_unconfirmed", p.b.runner.owner)
        assert p.creates() == 1
        assert sorted(await p.a.db.ledger.for_job(job.id)) == ["hold", "release"]


async def test_limits_and_fifo_hold_across_two_runners(tmp_path: Path, pg_url: str) -> None:
    async with pair(tmp_path, pg_url, max_running=2, processing_seconds=0.4) as p:
        jobs = [await p.accept(p.a if n % 2 else p.b, user=11 + n % 3) for n in range(8)]
        most, samples = 0, 0
        async with asyncio.timeout(60):
            while True:
                states = [r["state"] for r in await p.a.db.fetchall("SELECT state FROM jobs ORDER BY seq")]
                most = max(most, sum(s in ("submitting", "running", "completed") for s in states))
                # FIFO across both runners: a newer job holds a slot only if every older one still queued has
                # one kept for it (its own process starts it at its next pass, a NOTIFY away)
                in_slot = [n for n, s in enumerate(states) if s in ("submitting", "running", "completed")]
                if in_slot:
                    older_queued = sum(1 for s in states[:in_slot[-1]] if s == "queued")
                    assert len(in_slot) + older_queued <= 2, states
                samples += 1
                if all(s in ("delivered", "failed") for s in states):
                    break
                await asyncio.sleep(0.01)
        assert most == 2 and samples > 10  # the bot-wide limit, counted in the database, never exceeded by the two
        finals = [await _settled_once(p, job.id) for job in jobs]
        drivers = {j.owner for j in finals}
        assert drivers == {p.a.runner.owner, p.b.runner.owner}  # both did share the work
        assert p.creates() == len(jobs)


async def test_a_poke_or_a_cancel_at_one_runner_reaches_the_job_the_other_drives(tmp_path: Path,
                                                                                  pg_url: str) -> None:
    slow = PollSchedule(steps=(60.0,), cap=60.0)  # without a wake-up the first status read is a minute away
    async with pair(tmp_path, pg_url, max_running=1, poll=slow, processing_seconds=0.2) as p:
        first = await p.accept(p.a)
        assert (await p.wait(first.id, lambda j: j.state == "running")).owner == p.a.runner.owner
        queued = await p.accept(p.a)  # waits behind the first (one slot)
        await p.wait(queued.id, lambda j: j.owner is not None)
        await asyncio.sleep(0.5)  # the task has finished upstream by now; nobody has looked
        assert p.b.runner.poke(first.id)  # a callback arrived at b: it wakes a's driver (NOTIFY)
        await _settled_once(p, first.id)

        await p.wait(queued.id, lambda j: j.state != "queued")  # it got the slot
        third = await p.accept(p.a)  # a may keep it or, at its fair share, leave it to b: the Cancel goes elsewhere
        held = await p.wait(third.id, lambda j: j.owner is not None and j.state == "queued")
        driver, other = (p.a, p.b) if held.owner == p.a.runner.owner else (p.b, p.a)
        assert third.id in driver.runner._tasks
        assert await other.db.jobs.cancel_queued(third.id, 11)  # a Cancel pressed on the other process's shard
        await other.runner.abort(third.id)
        async with asyncio.timeout(10):
            while third.id in driver.runner._tasks:
                await asyncio.sleep(0.02)
        final = await p.a.db.jobs.get(third.id)
        assert final is not None and (final.state, final.error_code) == ("failed", "cancelled")
        assert p.creates() == 2  # the cancelled job never reached the upstream
