"""A finished job's last step before settlement: fetch the video, fit it to where it goes, post it.

Posted as a file (re-encoded below the place's upload limit, or below a 413's), else as a link with its
expiry. The chat platform's passing trouble (`DeliveryDelayed`) is retried with the runner's backoff while the
video's link lives; only a delivery that truly cannot happen (every place refused) ends the job, refunded.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.jobs.notifier import Delivery, DeliveryDelayed, Notifier, TooLarge, Undeliverable
from bot.jobs.settings import LINK_LIFETIME, JobFailed, RunnerSettings
from bot.upstream.client import VideoAPIClient
from bot.upstream.errors import TRY_LATER, DownloadError
from bot.upstream.retry import capped
from bot.video_fit import fit_to_size, fitted_path
from storage.models import Job

log = logging.getLogger(__name__)

DOWNLOAD_ATTEMPTS = 4  # a download's network trouble is retried while the video's link lives


class VideoDelivery:
    """Turn a `completed` job into a `Delivery`, or end it with `JobFailed`; the runner settles either way."""

    def __init__(self, *, api: VideoAPIClient, notifier: Notifier, settings: Callable[[], RunnerSettings],
                 clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]],
                 status: Callable[[Job, str], Awaitable[None]],
                 before_post: Callable[[Job], Awaitable[None]]) -> None:
        self.api, self.notifier, self._settings = api, notifier, settings
        self.clock, self.sleep, self.status = clock, sleep, status
        self.before_post = before_post  # the lease check right before a post, which cannot be taken back

    @property
    def settings(self) -> RunnerSettings:
        """The runner's settings as they are now (the runner owns them; tests and operators may swap them)."""
        return self._settings()

    async def run(self, job: Job) -> Delivery:
        """Fetch the video and post it as a file (re-encoded to fit if need be), else as a link.

        Discord's own trouble (5xx, network) delays a delivery, retried with backoff while the video's link
        lives; only a delivery that truly cannot happen (every target refused) is refunded.
        """
        assert job.result_url is not None
        await self.status(job, "Fetching your video…")
        path = self.settings.video_dir / f"{job.id}.mp4"
        try:
            try:
                size: int | None = await self._download(job, path)
            except DownloadError as exc:
                if exc.reason == "expired":
                    raise JobFailed("expired", exc.user_message) from exc
                if exc.reason != "too_large":
                    raise JobFailed(exc.reason, TRY_LATER) from exc
                size = None  # bigger than we will ever download: a link is the only way
            delays = 0
            while True:
                try:
                    delivery = await self._post_file(job, path, size) if size is not None else None
                    if delivery is None:
                        await self.before_post(job)
                        delivery = await self.notifier.deliver_link(job, job.result_url, job.result_expires_at)
                    break
                except DeliveryDelayed as exc:
                    delays += 1
                    await self._wait_to_deliver_again(job, delays, exc)
        except Undeliverable as exc:
            raise JobFailed("undeliverable", exc.user_message) from exc
        finally:  # a failing disk must not turn the job's own failure into a crash while cleaning up
            for leftover in (path, fitted_path(path)):
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)
        return delivery

    async def _download(self, job: Job, path: Path) -> int:
        """Fetch the result; network trouble is retried (the runner's one backoff) while the link is valid."""
        policy = self.settings.backoff(DOWNLOAD_ATTEMPTS)
        failures = 0
        while True:
            try:
                return await self.api.download(
                    job.result_url or "", path,
                    max_bytes=self.settings.max_video_bytes, timeout=self.settings.download_timeout,
                )
            except DownloadError as exc:
                failures += 1
                delay = policy.delay(failures) if exc.reason in ("network", "timeout") else None
                if delay is None:
                    raise
                log.warning("download failed; retrying", extra={"job": job.id, "reason": exc.reason})
                await self.sleep(delay)

    async def _post_file(self, job: Job, path: Path, size: int) -> Delivery | None:
        """Post the file, shrinking it to the stated limit (or below a 413's); None when nothing fits."""
        limit = await self.notifier.upload_limit(job)
        send = path if size <= limit else await fit_to_size(path, limit, fallback_duration=job.duration)
        if send is None:
            return None
        try:
            await self.before_post(job)
            return await self.notifier.deliver_file(job, send)
        except TooLarge as exc:
            smaller = await fit_to_size(path, int((exc.limit or limit) * 0.9), fallback_duration=job.duration)
            if smaller is None:
                return None
            with contextlib.suppress(TooLarge):
                await self.before_post(job)
                return await self.notifier.deliver_file(job, smaller)
        return None

    async def _wait_to_deliver_again(self, job: Job, delays: int, exc: DeliveryDelayed) -> None:
        """Back off before posting again, unless the video's link would be dead by then (then refund)."""
        delay = max(self.settings.backoff().backoff(delays), capped(exc.retry_after) or 0.0)
        expires = job.result_expires_at if job.result_expires_at is not None else job.updated_at + LINK_LIFETIME
        if self.clock() + delay >= expires:
            raise JobFailed("undeliverable", Undeliverable.user_message) from exc
        log.warning("delivery delayed by Discord trouble; will post again",
                    extra={"job": job.id, "attempt": delays, "wait": round(delay, 2)})
        await self.status(job, "Discord is having trouble; I'll keep trying to post your video.")
        await self.sleep(delay)


def clear_video_dir(video_dir: Path, older_than: float | None = None) -> int:
    """Delete partial downloads and re-encodes a killed process left behind (resumed jobs fetch again).

    `older_than` (seconds): spare files written more recently, which another process sharing the folder (and
    the database) may be writing now; None removes every leftover (one process per database).
    """
    removed = 0
    cutoff = time.time() - older_than if older_than is not None else float("inf")
    for path in video_dir.iterdir():
        if (path.is_file() and (path.name.endswith(".part") or path.suffix == ".mp4")
                and _mtime(path) < cutoff):
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
    return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")  # gone already
