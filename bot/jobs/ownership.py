"""The process side of the job runner: which jobs this process drives, under which leases, and its wake-ups.

A job is driven here only under a lease this process claimed in the database (bot.jobs.claims over
storage.leases): `launch` (a job accepted here) and the claim loop (its fair share of everything else, including
jobs whose process died) start one task per job; a lost lease cancels that task at once. Callbacks and Cancels
for a job driven elsewhere are passed on as NOTIFYs (`poke`, `abort`), and what other processes announce comes
back through `_heard`. The life of one job — the steps each task runs — is bot.jobs.runner.JobRunner.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable

from bot.jobs.claims import Claims, owner_name
from bot.jobs.delivery import clear_video_dir
from bot.jobs.health import HealthMonitor
from bot.jobs.notifier import Notifier
from bot.jobs.settings import RunnerSettings
from bot.jobs.slots import Slots
from bot.jobs.throttle import StatusThrottle
from bot.ops.metrics import Metrics
from bot.upstream.client import VideoAPIClient
from bot.upstream.retry import PollSchedule
from storage.db import Database
from storage.errors import LeaseLost
from storage.leases import Claimed, Lease
from storage.models import Job

log = logging.getLogger(__name__)


class JobTasks:
    """Drive this process's share of the jobs; one asyncio task per claimed job, all tracked.

    Ownership lives in the database (storage.leases): a job is driven only under a lease this process claimed,
    every write about it carries that lease, and a lost lease stops its task at once (bot.jobs.claims).
    """

    def __init__(
        self,
        *,
        db: Database,
        api: VideoAPIClient,
        notifier: Notifier,
        settings: RunnerSettings | None = None,
        schedule: PollSchedule | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        metrics: Metrics | None = None,
    ) -> None:
        settings = settings or RunnerSettings()
        self.metrics = metrics or Metrics()
        self.db, self.api, self.notifier, self.settings = db, api, notifier, settings
        self.schedule = schedule or PollSchedule()
        self.clock, self.sleep = clock, sleep
        self.monitor = HealthMonitor(api, interval=settings.health_interval, clock=clock, sleep=sleep)
        self.health = self.monitor.state
        self.owner = owner_name(settings.process_name)
        self._leases: dict[str, Lease] = {}  # the jobs this process drives, by the lease it holds on each
        self.claims = Claims(db, owner=self.owner, lease_seconds=settings.lease_seconds,
                             interval=settings.claim_interval, clock=clock, held=lambda: self._leases,
                             on_claimed=self._adopt, on_lost=self._lost, on_message=self._heard,
                             give_back=self._queued_beyond_share)
        self.slots = Slots(db, owner=lambda: self.owner, max_running=lambda: self.settings.max_running,
                           clock=time.monotonic, min_interval=settings.queue_refresh)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._hints: dict[str, str] = {}  # task ids named by callbacks for jobs whose create answer was lost
        self._throttles: dict[str, StatusThrottle] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._started_at = clock()
        self.settings.video_dir.mkdir(parents=True, exist_ok=True)

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> int:
        """Register this process, claim its share of the unfinished jobs (all of them, alone) and resume each
        from its recorded state; then keep claiming and renewing, and start the health and token loops.

        Raises:
            ConfigError: another process already drives this SQLite file's jobs.
        """
        await self.claims.open()
        shared_dir = self.db.shared  # other processes may be downloading into the same folder: spare fresh files
        removed = clear_video_dir(self.settings.video_dir, older_than=4 * self.settings.lease_seconds
                                  if shared_dir else None)
        if removed:
            log.info("removed files left by an earlier run", extra={"count": removed})
        claimed = await self.claims.pass_once()
        self._spawn(self.claims.run(), "claims")
        self._spawn(self.monitor.run(), "health")
        self._spawn(self._sweep_tokens(), "tokens")
        if claimed:
            log.info("resumed unfinished jobs", extra={"count": claimed})
        return claimed

    def launch(self, job: Job) -> None:
        """Start driving a job just accepted here (its row and hold exist); idempotent per job id.

        With other processes alive and this one at its fair share, the job is announced instead, for a process
        with room to claim at once.
        """
        if job.id in self._tasks:
            return
        census = self.claims.census
        if self.claims.running and census.live_processes > 1 and len(self._leases) >= math.ceil(
                (census.unfinished + 1) / census.live_processes):
            self._announce("new")
            return
        self._start_task(job.id)

    def _start_task(self, job_id: str) -> None:
        self._tasks[job_id] = task = asyncio.create_task(self._drive(job_id), name=f"job-{job_id}")
        task.add_done_callback(functools.partial(self._forget_task, job_id))

    def _forget_task(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(job_id) is task:
            del self._tasks[job_id]
            self._leases.pop(job_id, None)
            self.claims.forget(job_id)

    def _adopt(self, claimed: Claimed) -> None:
        """A claim succeeded (this loop's or a launch's): hold its lease, and drive the job unless already."""
        if claimed.previous_owner not in (None, self.owner):
            log.info("took a job over", extra={"job": claimed.job.id, "from": claimed.previous_owner,
                                               "state": claimed.job.state, "fence": claimed.job.fence})
        self._leases[claimed.job.id] = claimed.lease
        if claimed.job.id not in self._tasks:
            self._start_task(claimed.job.id)

    def _lost(self, job_id: str) -> None:
        """The lease is gone (renewal failed, or given back): stop the job's task now, writing nothing more."""
        self._leases.pop(job_id, None)
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()

    def _queued_beyond_share(self, count: int) -> list[Lease]:
        """Up to `count` of our jobs still waiting in the queue, newest first: what we give back over our share."""
        waiting = [lease for job_id, lease in reversed(self._leases.items()) if self.slots.is_waiting(job_id)]
        return waiting[:count]

    def poke(self, job_id: str, task_id: str | None = None) -> bool:
        """A callback arrived for this job: re-read its task now instead of at the next poll, wherever it is driven.

        `task_id` is what the callback said the task is; it is only a hint, used (after the upstream confirms
        it) for a job whose create answer was lost. A job driven by another process is woken there (NOTIFY).
        """
        if job_id not in self._tasks:
            if not self.db.shared:
                return False
            self._announce(f"poke:{job_id}:{task_id or ''}")
            return True
        if task_id:
            self._hints[job_id] = task_id
        event = self._wake.setdefault(job_id, asyncio.Event())  # an early callback (still submitting) counts too
        event.set()
        return True

    def _heard(self, payload: str) -> None:
        """A wake-up from another process (or our own, echoed): act on it if it concerns what we drive."""
        kind, _, rest = payload.partition(":")
        job_id, _, task_id = rest.partition(":")
        if kind == "poke" and job_id in self._tasks:
            self.poke(job_id, task_id or None)
        elif kind == "abort" and job_id in self._tasks:
            self._lost(job_id)
        elif kind == "new":
            self.claims.wake()
        elif kind == "slot":
            self.slots.kick()

    @property
    def driven(self) -> int:
        """How many jobs this process is driving now (health and metrics)."""
        return len(self._tasks)

    async def abort(self, job_id: str) -> None:
        """Stop driving a job now (cancelled, or its data is being erased); the caller settles it.

        A job driven by another process is stopped there (NOTIFY); its next fenced write would fail anyway.
        """
        task = self._tasks.get(job_id)
        if task is None:
            if self.db.shared:
                await self.db.notify(f"abort:{job_id}")
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def wait_idle(self, timeout: float) -> None:
        """Wait until no job is being driven (tests, benchmarks, shutdown)."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def stop(self) -> None:
        """Cancel every job task (each step is a transaction: nothing is left half-written), then give every
        lease back so other processes take the jobs over at once."""
        tasks = [*self._tasks.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        await self.slots.stop()
        await self.claims.close()
        log.info("runner stopped", extra={"claimed": self.claims.claimed_total, "claim_passes": self.claims.passes,
                                          "slot_passes": self.slots.passes})

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _sweep_tokens(self) -> None:
        """Interaction tokens are secrets: once Discord has killed one (15 minutes), nothing needs it."""
        while True:
            try:
                forgotten = await self.db.jobs.forget_expired_interactions(self.clock())
            except Exception:
                log.exception("forgetting expired interaction tokens failed")
            else:
                if forgotten:
                    log.info("forgot expired interaction tokens", extra={"count": forgotten})
            await self.sleep(self.settings.health_interval)

    # ---- leases --------------------------------------------------------------------------------

    def _lease(self, job_id: str) -> Lease:
        """The lease every write about this job carries (LeaseLost once it was lost)."""
        lease = self._leases.get(job_id)
        if lease is None:
            raise LeaseLost(job_id, self.owner, -1)
        return lease

    async def _sure(self, job: Job) -> None:
        """Right before a step that cannot be taken back (a post): a fenced touch proves the job is still ours.

        Raises:
            LeaseLost: another process holds it now.
        """
        await self.claims.touch(self._lease(job.id))

    def _announce(self, payload: str) -> None:
        """Tell the other processes (NOTIFY); nothing to do where the database serves one process."""
        if self.db.shared:
            self._spawn(self.db.notify(payload), "notify")

    async def _drive(self, job_id: str) -> None:
        raise NotImplementedError  # JobRunner: the life of one job
