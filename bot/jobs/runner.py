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
import logging
import time
from collections.abc import Awaitable, Callable

from bot.jobs.delivery import VideoDelivery
from bot.jobs.notifier import Delivery, Notifier, StatusUpdate
from bot.jobs.ownership import JobTasks
from bot.jobs.settings import LINK_LIFETIME, MAX_CREATES, JobFailed, RunnerSettings
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
from storage.errors import JobEnded, JobNotFound, LeaseLost
from storage.leases import DRIVING
from storage.models import Job, JobState

log = logging.getLogger(__name__)

INTERNAL = "Something went wrong on our side."


class JobRunner(JobTasks):
    """Own each claimed job from hold to settlement (bot.jobs.ownership.JobTasks: which jobs, under which lease).

    Every write about a job carries this process's lease on it (LeaseLost once another process claimed it), and
    the steps that cannot be taken back — the create, a post — come right after a fenced write or touch.
    """

    def __init__(self, *, db: Database, api: VideoAPIClient, notifier: Notifier,
                 settings: RunnerSettings | None = None, schedule: PollSchedule | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 metrics: Metrics | None = None) -> None:
        super().__init__(db=db, api=api, notifier=notifier, settings=settings, schedule=schedule, clock=clock,
                         sleep=sleep, metrics=metrics)
        self.delivery = VideoDelivery(api=api, notifier=notifier, settings=lambda: self.settings, clock=clock,
                                      sleep=sleep, status=self._note, before_post=self._sure)

    # ---- one job ---------------------------------------------------------------------------------

    async def _drive(self, job_id: str) -> None:
        DRIVING.set((job_id, self._leases))  # writes for this job by code that carries no lease: fenced too
        if job_id not in self._leases and not await self.claims.claim(1, job_id=job_id):
            return  # another process holds it
        job = await self.db.jobs.get(job_id)
        if job is None or job.is_finished:
            return
        extra = {"job": job.id, "guild": job.guild_id}
        taken_over = job.fence > 1 or job.updated_at < self._started_at  # someone drove it before this claim
        if taken_over:  # its status was edited elsewhere, lately perhaps: keep to the throttle across processes
            self._throttles[job.id] = StatusThrottle.taken_over(job.state, self.clock())
        try:
            try:
                if job.state == "queued":
                    job = await self._wait_for_slot(job)
                if job.state in ("queued", "submitting"):
                    job = await self._submit(job)
                if job.state == "running":
                    job = await self._follow(job, resumed=taken_over)
                if job.state == "completed" and not (taken_over and await self._adopt_earlier_post(job)):
                    await self._deliver(job)
            except JobEnded:  # cancelled while it waited (Jobs.cancel_queued): settled there
                log.info("job ended while it waited (cancelled); nothing was sent", extra=extra)
            except JobFailed as failure:
                log.info("job failed", extra={**extra, "code": failure.code})
                await self._fail(job, failure.code, failure.user_message)
            except (asyncio.CancelledError, LeaseLost, JobNotFound):
                raise
            except Exception:
                log.exception("job crashed; refunding", extra=extra)
                await self._fail(job, "internal", INTERNAL)
        except LeaseLost:
            log.warning("lease lost: another process drives this job now; nothing more is written here", extra=extra)
        except JobNotFound:
            log.info("job's row is gone (its data was erased); stopping", extra=extra)
        finally:
            self.slots.forget(job_id)
            self._wake.pop(job_id, None)
            self._hints.pop(job_id, None)
            self._throttles.pop(job_id, None)
            self.slots.kick()  # a slot may be free now: here, and (NOTIFY) in every other process
            self._announce("slot")

    async def _wait_for_slot(self, job: Job) -> Job:
        """Wait for the database to grant a slot (storage.leases.start_queued), showing the job's place now and
        then (not on every move); the job comes back `submitting`.

        Raises:
            JobEnded: it left the queue otherwise (cancelled or erased) while it waited.
        """
        while True:
            waiter = self.slots.wait(job.id, self._lease(job.id).fence)
            while not waiter.done:
                position = self.slots.position(job.id)
                if position is not None:
                    await self._status(job, "queued", queue_position=position)
                try:
                    async with asyncio.timeout(self.settings.queue_refresh):
                        await waiter.event.wait()
                except TimeoutError:
                    self.slots.kick(changed=False)  # the fallback when no wake-up came
                waiter.event.clear()
            self.slots.forget(job.id)
            fresh = await self.db.jobs.get(job.id)
            if fresh is None or fresh.state == "failed":
                raise JobEnded(job.id, fresh.state if fresh else "erased", "submitting")
            if fresh.owner != self.owner or fresh.fence != self._lease(job.id).fence:
                raise LeaseLost(job.id, self.owner, self._lease(job.id).fence)
            if fresh.state != "queued":
                return fresh

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
            await self._status(job, "submitting")
            # The fenced write right before the create, which bills the operator and cannot be taken back.
            job = await self.db.jobs.mark_submitting(job.id, lease=self._lease(job.id))  # JobEnded: cancelled
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
                job = await self.db.jobs.mark_create_refused(job.id, lease=self._lease(job.id))
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
            return await self.db.jobs.mark_running(job.id, task_id, lease=self._lease(job.id))

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
                    return await self.db.jobs.mark_running(job.id, hint, lease=self._lease(job.id))
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
        return await self.db.jobs.mark_completed(job.id, task.video_urls[0], expires, lease=self._lease(job.id))

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
        if await self.db.jobs.finish_delivered(job.id, delivery.url, lease=self._lease(job.id)):
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
        if await self.db.jobs.finish_failed(job.id, code, message, lease=self._lease(job.id)):
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
        if not final and not self.claims.valid(job.id):
            return  # past our lease by our own clock (paused?): say nothing until a renewal says it is still ours
        update = StatusUpdate(state=state, elapsed=max(0.0, self.clock() - job.created_at), progress=progress,
                              queue_position=queue_position, note=note, final=final)
        throttle = self._throttles.setdefault(job.id, StatusThrottle())
        now = self.clock()
        if not throttle.should_send(update, now, message_age=now - job.created_at):
            return
        try:
            await self.notifier.show_status(job, update)
        except LeaseLost:
            raise  # recording a new status message is a fenced write too
        except Exception:
            log.exception("status update failed", extra={"job": job.id})

    async def _note(self, job: Job, note: str) -> None:
        """A note on the status of a job being delivered (how the delivery step speaks to the member)."""
        await self._status(job, "completed", note=note)

    def _callback_url(self, job: Job) -> str | None:
        base = self.settings.callback_base_url
        return f"{base.rstrip('/')}/callbacks/{job.callback_token}" if base else None


__all__ = ["MAX_CREATES", "JobFailed", "JobRunner", "RunnerSettings"]
