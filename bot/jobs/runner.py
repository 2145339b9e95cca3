"""The life of a job, from held credits to one settlement: queue, submit, follow, download, deliver, settle.

Every step starts from the job's row, and every step's outcome is written before the next begins, so a
restarted bot picks each unfinished job up where it was. The ledger, not any message, is the truth: a job
ends `delivered` (its hold charged) or `failed` (its hold released), exactly once, in one transaction.
The methods below read in the order a job meets them: `launch` → `_drive` → `_wait_for_slot` → `_submit`
(→ `_await_unconfirmed`) → `_follow` → `_deliver` (→ `_download`, `_post_file`) → `_settle_delivered` or `_fail`.
The words a member reads come from the errors that end a job (bot.upstream.errors, bot.jobs.notifier).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from bot.jobs.delivery import VideoDelivery, clear_video_dir
from bot.jobs.health import HealthMonitor
from bot.jobs.notifier import Delivery, Notifier, StatusUpdate
from bot.jobs.settings import LINK_LIFETIME, MAX_CREATES, JobFailed, RunnerSettings
from bot.jobs.slots import SlotPool
from bot.jobs.throttle import StatusThrottle
from bot.ops.metrics import Metrics
from bot.upstream.client import VideoAPIClient
from bot.upstream.errors import (
    TRY_LATER,
    CreateUnconfirmed,
    RateLimited,
    TaskNotFound,
    TaskTimedOut,
    UpstreamError,
    VideoAPIError,
)
from bot.upstream.models import Task
from bot.upstream.retry import PollSchedule, capped, wait_for_task
from storage.db import Database
from storage.errors import JobEnded
from storage.models import Job, JobState

log = logging.getLogger(__name__)

INTERNAL = "Something went wrong on our side."


class JobRunner:
    """Own every job from hold to settlement; one asyncio task per live job, all tracked."""

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
        self.slots = SlotPool(settings.max_running)
        self.delivery = VideoDelivery(api=api, notifier=notifier, settings=lambda: self.settings, clock=clock,
                                      sleep=sleep, status=self._note)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._hints: dict[str, str] = {}  # task ids named by callbacks for jobs whose create answer was lost
        self._throttles: dict[str, StatusThrottle] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._started_at = clock()
        self.settings.video_dir.mkdir(parents=True, exist_ok=True)

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> int:
        """Resume every unfinished job (oldest first); start the health re-check and the token sweep."""
        removed = clear_video_dir(self.settings.video_dir)
        if removed:
            log.info("removed files left by an earlier run", extra={"count": removed})
        jobs = await self.db.jobs.unfinished()
        for job in jobs:  # jobs that were past the queue keep their slots before any queued job asks for one
            if job.state != "queued":
                self.slots.occupy(job.id, job.guild_id)
        for job in jobs:
            self.launch(job)
        self._spawn(self.monitor.run(), "health")
        self._spawn(self._sweep_tokens(), "tokens")
        if jobs:
            log.info("resumed unfinished jobs", extra={"count": len(jobs)})
        return len(jobs)

    def launch(self, job: Job) -> None:
        """Start driving a job whose row and hold already exist; idempotent per job id."""
        if job.id in self._tasks:
            return
        self._tasks[job.id] = task = asyncio.create_task(self._drive(job.id), name=f"job-{job.id}")
        task.add_done_callback(functools.partial(self._forget_task, job.id))

    def _forget_task(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self._tasks.pop(job_id, None)

    def poke(self, job_id: str, task_id: str | None = None) -> bool:
        """A callback arrived for this job: re-read its task now instead of at the next poll.

        `task_id` is what the callback said the task is; it is only a hint, used (after the upstream confirms
        it) for a job whose create answer was lost.
        """
        if job_id not in self._tasks:
            return False
        if task_id:
            self._hints[job_id] = task_id
        event = self._wake.setdefault(job_id, asyncio.Event())  # an early callback (still submitting) counts too
        event.set()
        return True

    @property
    def driven(self) -> int:
        """How many jobs this process is driving now (health and metrics)."""
        return len(self._tasks)

    async def abort(self, job_id: str) -> None:
        """Stop driving a job now (its data is being erased); the caller settles it. No-op if not driven."""
        task = self._tasks.get(job_id)
        if task is None:
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
        """Cancel every job task; each step is a transaction, so nothing is left half-written."""
        tasks = [*self._tasks.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    # ---- one job ---------------------------------------------------------------------------------

    async def _drive(self, job_id: str) -> None:
        job = await self.db.jobs.get(job_id)
        if job is None or job.state in ("delivered", "failed"):
            return
        extra = {"job": job.id, "guild": job.guild_id}
        resumed = job.state == "completed" and job.updated_at < self._started_at
        try:
            if job.state == "queued":
                await self._wait_for_slot(job)
            else:  # it was running before a restart: it keeps its place
                self.slots.occupy(job.id, job.guild_id)
            if job.state in ("queued", "submitting"):
                job = await self._submit(job)
            if job.state == "running":
                job = await self._follow(job, resumed=job.updated_at < self._started_at)
            if job.state == "completed" and not (resumed and await self._adopt_earlier_post(job)):
                await self._deliver(job)
        except JobEnded:  # cancelled between its slot and its create (Jobs.cancel_queued): settled there
            log.info("job ended while it waited (cancelled); nothing was sent", extra=extra)
        except JobFailed as failure:
            log.info("job failed", extra={**extra, "code": failure.code})
            await self._fail(job, failure.code, failure.user_message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job crashed; refunding", extra=extra)
            await self._fail(job, "internal", INTERNAL)
        finally:
            self.slots.release(job_id)
            self._wake.pop(job_id, None)
            self._hints.pop(job_id, None)
            self._throttles.pop(job_id, None)

    async def _wait_for_slot(self, job: Job) -> None:
        """Queue for a slot, refreshing the job's place in the queue now and then (not on every move)."""
        settings = await self.db.guilds.get(job.guild_id)
        acquire = asyncio.ensure_future(self.slots.acquire(job.id, job.guild_id, settings.max_jobs_per_guild))
        try:
            while not acquire.done():
                position = self.slots.position(job.id)
                if position is not None:
                    await self._status(job, "queued", queue_position=position)
                await asyncio.wait({acquire}, timeout=self.settings.queue_refresh)
            await acquire
        finally:
            if not acquire.done():
                acquire.cancel()

    async def _submit(self, job: Job) -> Job:
        """Send the create, at most `max_creates` times in all (counted in the row, so across restarts too).

        Only an answer that proves no task was made (429, 5xx, no connection) allows another create; a create
        whose answer never came may have made a billed task, so it is never sent again: the job waits for that
        task's callback instead, or is refunded.
        """
        failures = 0
        while True:
            if job.create_inflight:  # sent before, answer never seen (here, or before a restart)
                return await self._await_unconfirmed(job)
            if job.attempts >= self.settings.max_creates:
                raise JobFailed("too_many_creates", TRY_LATER)
            job = await self.db.jobs.mark_submitting(job.id)  # JobEnded: cancelled while it waited
            await self._status(job, "submitting")
            try:
                task_id = await self.api.create_task(
                    prompt=job.prompt,
                    duration=job.duration,
                    aspect_ratio=job.aspect_ratio,
                    image_url=job.image_url,
                    callback_url=self._callback_url(job),
                )
            except CreateUnconfirmed as exc:
                log.error("create sent but its answer was lost; not sending it again",
                          extra={"job": job.id, "code": exc.cause.code, "attempt": job.attempts})
                continue  # job.create_inflight is set: wait for the callback or refund
            except VideoAPIError as exc:
                self.health.record(exc)
                job = await self.db.jobs.mark_create_refused(job.id)
                failures += 1
                delay = self.settings.backoff().delay(failures) if exc.retryable else None
                if delay is None or job.attempts >= self.settings.max_creates:
                    message = exc.user_message if not exc.retryable else TRY_LATER
                    raise JobFailed(exc.code, message) from exc
                delay = max(delay, capped(exc.retry_after) or 0.0)
                if isinstance(exc, RateLimited):
                    await self._status(job, "submitting",
                                       note="The video service is busy; your job is waiting its turn.")
                log.warning("create refused; retrying",
                            extra={"job": job.id, "code": exc.code, "attempt": job.attempts, "wait": round(delay, 2)})
                await self.sleep(delay)
                continue
            log.info("submitted", extra={"job": job.id, "task": task_id, "attempt": job.attempts})
            return await self.db.jobs.mark_running(job.id, task_id)

    async def _await_unconfirmed(self, job: Job) -> Job:
        """A create whose answer was lost: recognise its task by the callback to this job's own URL, or refund.

        The callback's body is never trusted: the task it names is read from the upstream before it is adopted.
        """
        if self._callback_url(job) is None:
            log.error("create unconfirmed and no callbacks configured: refunding; the upstream may hold an "
                      "orphaned task", extra={"job": job.id})
            raise JobFailed("create_unconfirmed", CreateUnconfirmed.friendly)
        wake = self._wake.setdefault(job.id, asyncio.Event())
        deadline = (job.submitted_at or job.updated_at) + self.settings.unconfirmed_wait
        await self._status(job, "submitting", note="Waiting for the video service to confirm your job.")
        while self.clock() < deadline:
            hint = self._hints.pop(job.id, None)
            if hint is not None:
                try:
                    await self.api.get_task(hint)
                except VideoAPIError as exc:
                    log.warning("callback named a task the upstream can't show", extra={"job": job.id, "code": exc.code})
                else:
                    log.info("recognised the task of a lost create by its callback", extra={"job": job.id, "task": hint})
                    wake.set()  # its callback came, so the task has likely ended: read it at once
                    return await self.db.jobs.mark_running(job.id, hint)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(deadline - self.clock(), 0.0)):
                    await wake.wait()
            wake.clear()
        log.error("create unconfirmed and no callback came: refunding; the upstream may hold an orphaned task",
                  extra={"job": job.id})
        raise JobFailed("create_unconfirmed", CreateUnconfirmed.friendly)

    async def _follow(self, job: Job, *, resumed: bool = False) -> Job:
        """Poll (woken by callbacks) until the task ends; failed reads never end it, JOB_TIMEOUT does."""
        assert job.task_id is not None
        wake = self._wake.setdefault(job.id, asyncio.Event())
        await self._status(job, "running")

        async def on_update(task: Task) -> None:
            await self._status(job, "running", progress=task.progress)

        def on_read_failure(exc: VideoAPIError, run: int) -> None:
            self.health.record(exc)
            log.warning("status check failed; will keep following", extra={"job": job.id, "code": exc.code, "run": run})

        submitted = job.submitted_at or job.updated_at
        try:
            task = await wait_for_task(
                self.api, job.task_id, schedule=self.schedule, sleep=self.sleep, on_update=on_update,
                on_read_failure=on_read_failure, wake=wake,
                poll_first=resumed,  # a task followed before a restart may long be done
                clock=self.clock, deadline=submitted + self.settings.job_timeout,
                read_failures=self.settings.backoff(self.settings.poll_retries),
            )
        except (TaskNotFound, TaskTimedOut) as exc:
            raise JobFailed(exc.code, exc.user_message) from exc
        except VideoAPIError as exc:  # a lasting run of failed reads: refunded rather than held for hours
            raise JobFailed(exc.code, exc.user_message if exc.misconfigured else TRY_LATER) from exc
        if task.status != "completed":
            code = task.error_code or "task_failed"
            raise JobFailed(code, UpstreamError.friendly)
        if not task.video_urls:
            raise JobFailed("no_output", UpstreamError.friendly)
        expires = (task.completed_at or self.clock()) + LINK_LIFETIME
        log.info("task completed", extra={"job": job.id, "task": job.task_id})
        return await self.db.jobs.mark_completed(job.id, task.video_urls[0], expires)

    async def _adopt_earlier_post(self, job: Job) -> bool:
        """After a crash between posting and recording, find the post instead of posting the video again."""
        try:
            delivery = await self.notifier.find_delivery(job)
        except Exception:
            log.exception("looking for an earlier post failed", extra={"job": job.id})
            return False
        if delivery is None:
            return False
        log.info("found the video posted before a restart", extra={"job": job.id})
        await self._settle_delivered(job, delivery)
        return True

    async def _deliver(self, job: Job) -> None:
        """Post the finished video (see bot.jobs.delivery), then charge the hold."""
        await self._settle_delivered(job, await self.delivery.run(job))

    async def _settle_delivered(self, job: Job, delivery: Delivery) -> None:
        if await self.db.jobs.finish_delivered(job.id, delivery.url):
            log.info("delivered and charged", extra={"job": job.id, "how": delivery.how, "credits": job.cost})
            job = await self.db.jobs.get(job.id) or job
            entries = await self.db.ledger.for_job(job.id)
            self.metrics.job_finished("delivered")
            self.metrics.delivered(delivery.how)
            if "charge" in entries:
                self.metrics.credits_moved("charged", job.cost)
            note = (f"Done. {job.cost} credits charged." if "charge" in entries
                    else "Done. No credits were charged (an admin gave them back).")
            await self._status(job, "delivered", final=True, note=note)

    async def _fail(self, job: Job, code: str, message: str) -> None:
        before = await self.db.jobs.get(job.id) or job  # settling forgets the interaction token; the notice needs it
        if await self.db.jobs.finish_failed(job.id, code, message):
            self.metrics.job_finished("failed", code)
            self.metrics.credits_moved("released", job.cost)
            note = f"{message} Your {job.cost} credits were refunded."
            job = await self.db.jobs.get(job.id) or job
            await self._status(job, "failed", final=True, note=note)
            try:
                await self.notifier.announce_failure(before, note)
            except Exception:  # the notifier promises not to raise; a bug there must not undo the refund
                log.exception("failure notice crashed", extra={"job": job.id})

    # ---- helpers ---------------------------------------------------------------------------------

    async def _status(self, job: Job, state: JobState, *, progress: float | None = None,
                      queue_position: int | None = None, note: str | None = None, final: bool = False) -> None:
        update = StatusUpdate(state=state, elapsed=max(0.0, self.clock() - job.created_at), progress=progress,
                              queue_position=queue_position, note=note, final=final)
        throttle = self._throttles.setdefault(job.id, StatusThrottle())
        now = self.clock()
        if not throttle.should_send(update, now, message_age=now - job.created_at):
            return
        try:
            await self.notifier.show_status(job, update)
        except Exception:
            log.exception("status update failed", extra={"job": job.id})

    async def _note(self, job: Job, note: str) -> None:
        """A note on the status of a job being delivered (how the delivery step speaks to the member)."""
        await self._status(job, "completed", note=note)

    def _callback_url(self, job: Job) -> str | None:
        base = self.settings.callback_base_url
        return f"{base.rstrip('/')}/callbacks/{job.callback_token}" if base else None

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


__all__ = ["MAX_CREATES", "JobFailed", "JobRunner", "RunnerSettings"]
