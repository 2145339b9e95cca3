"""The job records storage hands out: a request to create one, and the stored job; the states and kinds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

#: Where a job is in its life (forward only; the database's triggers refuse a move back).
JobState = Literal["queued", "submitting", "running", "completed", "delivered", "failed"]
#: What a ledger entry does: grant/refill/adjust (+x, 0), hold (-c, +c), charge (0, -c), release (+c, -c),
#: refund (+c, 0), as (delta_available, delta_held).
LedgerKind = Literal["grant", "refill", "adjust", "hold", "charge", "release", "refund"]
#: How a hold is settled, once: charged (the video was delivered) or released (it was not).
Settlement = Literal["charge", "release"]

UNFINISHED: tuple[JobState, ...] = ("queued", "submitting", "running", "completed")
IN_SLOT: tuple[JobState, ...] = ("submitting", "running", "completed")  # holding a "running at once" slot
FINISHED: tuple[JobState, ...] = ("delivered", "failed")
# The same sets as SQL lists, for `state IN (...)`: written once, here (the values are constants, not input).
UNFINISHED_SQL = ", ".join(f"'{s}'" for s in UNFINISHED)
IN_SLOT_SQL = ", ".join(f"'{s}'" for s in IN_SLOT)

# Moves set_state() allows; delivered/failed only through finish_delivered()/finish_failed(), which settle.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    "queued": frozenset({"submitting", "failed"}),
    "submitting": frozenset({"submitting", "queued", "running", "failed"}),
    "running": frozenset({"running", "completed", "failed"}),
    "completed": frozenset({"completed", "delivered", "failed"}),
    "delivered": frozenset(),
    "failed": frozenset(),
}


@dataclass(frozen=True, slots=True)
class NewJob:
    """What a member asked for; `cost` comes from bot.pricing.cost(duration).

    `parent_channel_id` lets a thread inherit its parent channel's place in the server's allow-list.
    """

    guild_id: int
    channel_id: int
    user_id: int
    prompt: str
    duration: int
    cost: int
    aspect_ratio: str = "16:9"
    image_url: str | None = None
    parent_channel_id: int | None = None
    interaction_application_id: int | None = None
    interaction_token: str | None = field(default=None, repr=False)
    interaction_token_expires_at: float | None = None
    upload_limit: int | None = None  # bytes, as Discord stated it on the interaction
    role_ids: tuple[int, ...] | None = None  # the member's roles on the interaction (tiers); None = last seen


@dataclass(frozen=True, slots=True)
class Job:
    """One video request and everything needed to resume it after a restart. Times are UNIX seconds.

    The interaction token and the callback token are secrets: they stay out of repr() and so out of logs.
    """

    id: str
    seq: int
    guild_id: int
    channel_id: int
    user_id: int
    prompt: str
    duration: int
    aspect_ratio: str
    image_url: str | None
    cost: int
    state: JobState
    task_id: str | None
    callback_token: str = field(repr=False)
    result_url: str | None = None
    result_expires_at: float | None = None
    delivered_message_url: str | None = None
    status_message_id: int | None = None
    status_channel_id: int | None = None
    interaction_application_id: int | None = None
    interaction_token: str | None = field(default=None, repr=False)
    interaction_token_expires_at: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None
    upload_limit: int | None = None
    create_inflight: int = 0  # 1 while a create's answer is outstanding: a billed task may exist
    submitted_at: float | None = None  # when the last create was sent
    owner: str | None = None  # the process whose lease lets it drive the job (storage.leases; expiry not kept here)
    fence: int = 0  # grows on every claim: a write carrying an older fence is refused (LeaseLost)

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED

    def interaction_usable(self, now: float, margin: float = 30.0) -> bool:
        """Whether the interaction token can still be used (Discord kills it after 15 minutes)."""
        return (
            self.interaction_token is not None
            and self.interaction_token_expires_at is not None
            and now < self.interaction_token_expires_at - margin
        )


JOB_COLUMNS = tuple(f.name for f in dataclasses.fields(Job))


def job_from_row(row: Any) -> Job:
    return Job(**{name: row[name] for name in JOB_COLUMNS})
