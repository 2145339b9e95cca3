"""What the job runner needs from a chat platform, so the life of a job stays free of Discord code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from storage.models import Job, JobState

DeliveryHow = Literal["interaction", "channel", "dm", "link"]


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """One snapshot of a job for its public status message."""

    state: JobState
    elapsed: float  # seconds since the job was accepted
    progress: float | None = None  # 0..100 when the upstream reports it
    queue_position: int | None = None
    eta: float | None = None  # estimated start (unix time) of a queued job, from recent jobs' durations
    note: str | None = None  # a friendly sentence: why it waits, why it failed, what was refunded
    final: bool = False


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a finished video ended up; `url` is kept so `/sora jobs` can point at it."""

    url: str | None
    how: DeliveryHow


class Undeliverable(Exception):
    """Nowhere to post the result, for good: every way was refused (the channel is gone or forbidden, the
    token dead, the requester takes no DMs). A failure that may pass is `DeliveryDelayed` instead."""

    user_message = "I couldn't post the video here or send it to you by DM."


class DeliveryDelayed(Exception):
    """Every way of posting failed and at least one failure was the platform's own trouble (5xx, a network
    error or time-out, a rate limit it would not wait out), so trying again later may work.

    The video's link lives for hours: retry with backoff while it is valid instead of refunding a finished
    video. `retry_after` is the platform's own hint in seconds (a rate limit's), else None.
    """

    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("delivery delayed by the chat platform's trouble")
        self.retry_after = retry_after


class TooLarge(Exception):
    """The platform refused the file as too large (Discord: 413, code 40005)."""

    def __init__(self, limit: int | None = None) -> None:
        super().__init__("file too large for this server")
        self.limit = limit


class Notifier(Protocol):
    """The chat side of a job: status, delivery, and the limits that shape delivery.

    Delivery may be asked for again for the same job (after `DeliveryDelayed`, or after a restart):
    implementations make a repeated post recognisable so the platform can return the first one, and do not
    ask again a place that refused the job for good (every refused request costs the bot standing).
    """

    async def show_status(self, job: Job, update: StatusUpdate) -> None:
        """Create or edit the job's public status message; never raises for chat-side failures."""

    async def upload_limit(self, job: Job) -> int:
        """The largest file, in bytes, that can be posted where this job delivers."""

    async def deliver_file(self, job: Job, video: Path) -> Delivery:
        """Post the video file.

        Raises:
            TooLarge: the platform refused the file's size (re-encode smaller or post a link).
            DeliveryDelayed: nothing worked, but some failure was transient: try again later.
            Undeliverable: every way was permanently refused.
        """

    async def deliver_link(self, job: Job, url: str, expires_at: float | None) -> Delivery:
        """Post a link to the video when no file fits; raises DeliveryDelayed or Undeliverable (as above)."""

    async def find_delivery(self, job: Job) -> Delivery | None:
        """The job's result if it was already posted (a crash came before it was recorded), else None."""

    async def announce_failure(self, job: Job, message: str) -> None:
        """Tell the requester their job failed and was refunded; never raises."""
