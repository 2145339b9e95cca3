"""Errors raised by storage: schema problems, illegal job moves and the quota refusals members read.

`UserFacingError` is the one base of every error whose text is written for the person who caused it (quota
refusals here; prompt, image and flow refusals in bot/). It lives here, in the lowest layer, because storage
may import nothing of the bot's, while bot/ and the Discord side may import storage. Its wording is plain
text: how a chat platform marks up a channel or a member is the front end's business, not storage's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime


class UserFacingError(Exception):
    """An error whose `user_message` a member (or admin) can read as-is; nothing was charged or changed.

    Subclasses set a default `user_message` or pass one in; the front end shows it instead of a generic
    "something went wrong", and logs no traceback for it.
    """

    user_message: str = "That can't be done right now."

    def __init__(self, user_message: str | None = None) -> None:
        if user_message is not None:
            self.user_message = user_message
        super().__init__(self.user_message)


class StorageError(Exception):
    """Base of every error this package raises on purpose."""


class SchemaTooNew(StorageError):
    """The database was written by a newer version of the bot; refuse rather than corrupt it."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"database schema version {found} is newer than this bot supports ({supported}); "
            "upgrade the bot or point DATABASE_PATH (or DATABASE_URL) at another database"
        )
        self.found = found
        self.supported = supported


class ConstraintViolation(StorageError):
    """The database refused a write that breaks one of its rules (a CHECK, a unique index, a trigger).

    Raised the same way on SQLite and PostgreSQL; the repositories never cause one on purpose, so seeing
    one means a bug or someone writing SQL by hand, and nothing of that transaction was kept.
    """


class JobNotFound(StorageError, LookupError):
    """No job has this id (it may have been deleted with its member's data)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r}")
        self.job_id = job_id


class LeaseLost(StorageError):
    """This process no longer holds the job's lease (another claimed it, or the row is gone): nothing was written.

    Raised by every write made with a `Lease` whose owner or fence no longer matches the row, so a process that
    was paused, cut off or too slow to renew can neither charge, nor mark, nor post for that job.
    """

    def __init__(self, job_id: str, owner: str, fence: int) -> None:
        super().__init__(f"job {job_id}: lease {owner}#{fence} lost")
        self.job_id = job_id


class DatabaseInUse(StorageError):
    """Another process already drives jobs from this SQLite file; its sentence is the one line the operator reads."""

    def __init__(self, path: str, pid: str) -> None:
        who = f" (pid {pid})" if pid else ""
        super().__init__(f"{path} is in use by another sora-bot process{who}; one SQLite file serves one process: "
                         "set DATABASE_URL to a PostgreSQL database to run several")
        self.path = path


class IllegalTransition(StorageError, ValueError):
    """A job was asked to move to a state it cannot reach from where it is."""

    def __init__(self, job_id: str, current: str, wanted: str) -> None:
        super().__init__(f"job {job_id}: cannot go from {current} to {wanted}")
        self.job_id = job_id
        self.current = current
        self.wanted = wanted


class JobEnded(IllegalTransition):
    """The job ended while it waited for its create (Jobs.cancel_queued): no create may go out for it."""


class AmountOutOfRange(StorageError, UserFacingError, ValueError):
    """An amount of credits is not a whole number within the stated bounds; nothing was written.

    `user_message` is a sentence for the admin who typed it. The bounds are storage.ledger.MAX_ENTRY (one
    entry) and MAX_BALANCE (a member's available + held), also enforced by migration 0004.
    """

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)


class QuotaRefused(StorageError, UserFacingError):
    """A job was refused before any credit moved; `user_message` tells the member what to do."""

    user_message = "You can't start a video right now."


class Blocked(QuotaRefused):
    """An admin blocked this member from generating in this server."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        why = f" Reason: {reason.strip()}" if reason.strip() else ""
        super().__init__(
            f"A server admin has blocked you from making videos here.{why} "
            "If you think this is a mistake, ask a server admin."
        )


class ChannelNotAllowed(QuotaRefused):
    """The server limits /sora to some channels and this is not one of them.

    The front end names `allowed_channel_ids` in its own markup; the plain message says what to do without.
    """

    def __init__(self, allowed_channel_ids: Sequence[int]) -> None:
        self.allowed_channel_ids = tuple(allowed_channel_ids)
        super().__init__("Videos can't be made in this channel. Please use one of the channels a server admin "
                         "allowed.")


class DurationNotAllowed(QuotaRefused):
    """The member's tier (their roles) does not allow this video length; `allowed` is what it does allow."""

    def __init__(self, duration: int, allowed: Sequence[int]) -> None:
        self.duration, self.allowed = duration, tuple(allowed)
        names = " or ".join(f"{d} s" for d in self.allowed) if self.allowed else "none"
        super().__init__(f"Your roles here don't allow {duration}-second videos. You may make videos of {names}. "
                         "Nothing was charged.")


class TooManyJobs(QuotaRefused):
    """The member already has as many jobs in progress as the server allows."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        plural = "video" if limit == 1 else "videos"
        super().__init__(
            f"You already have {limit} {plural} in progress, the most this server allows at once. "
            "Wait for one to finish, then try again."
        )


class Cooldown(QuotaRefused):
    """The member started a job too recently."""

    def __init__(self, retry_after_seconds: int) -> None:
        self.retry_after_seconds = retry_after_seconds
        unit = "second" if retry_after_seconds == 1 else "seconds"
        super().__init__(f"Please wait {retry_after_seconds} more {unit} before starting another video.")


class DailyBudgetExhausted(QuotaRefused):
    """The server's credits for today (UTC) would be exceeded by this job."""

    def __init__(self, budget: int, spent: int, needed: int, resets_at: datetime) -> None:
        self.budget = budget
        self.spent = spent
        self.needed = needed
        self.resets_at = resets_at
        left = max(0, budget - spent)
        super().__init__(
            f"This server has used its daily video budget: {left} of {budget} credits are left today and this "
            f"video costs {needed}. The budget resets at midnight UTC ({resets_at:%H:%M} UTC); "
            "try a shorter video or come back then."
        )


class NotEnoughCredits(QuotaRefused):
    """The member cannot afford the job."""

    def __init__(self, available: int, needed: int, next_refill_at: datetime | None = None) -> None:
        self.available = available
        self.needed = needed
        self.next_refill_at = next_refill_at
        refill = f", wait for your next refill ({next_refill_at:%Y-%m-%d %H:%M} UTC)" if next_refill_at else ""
        super().__init__(
            f"This video costs {needed} credits but you have {available}. "
            f"Pick a shorter duration{refill}, or ask a server admin for more credits."
        )
