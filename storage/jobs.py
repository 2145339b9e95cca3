"""Video jobs: created together with their credit hold, moved forward state by state, settled exactly once."""

from __future__ import annotations

import logging
import secrets
import uuid
from typing import TYPE_CHECKING, Any

from storage.admission import check_admission
from storage.conn import ADMISSION, GUILD, Conn, fetchall, fetchone
from storage.errors import IllegalTransition, JobEnded, JobNotFound
from storage.guilds import settings_in
from storage.leases import Lease, check_lease, lease_for
from storage.ledger import add_entry, settle_in, touch_member
from storage.models import (
    IN_SLOT_SQL,
    JOB_COLUMNS,
    TRANSITIONS,
    UNFINISHED_SQL,
    Job,
    JobState,
    NewJob,
    Settlement,
    job_from_row,
)
from storage.tiers import member_settings_in, remember_roles_in

if TYPE_CHECKING:
    from storage.db import Database

__all__ = ["Job", "Jobs", "NewJob"]

log = logging.getLogger(__name__)

# What settling a job forgets: the interaction token is a secret that lets anyone post as the bot in that
# interaction, and once the job is settled nothing of ours uses it again (callers keep the object they had).
_FORGET_INTERACTION: dict[str, Any] = {
    "interaction_token": None, "interaction_token_expires_at": None, "interaction_application_id": None,
}
ERASED = "erased"  # error_code of a job ended because an admin erased its member's or server's data
CANCELLED = "cancelled"  # error_code of a queued job its requester (or an admin) cancelled
# Columns set_state() may change; everything else (ids, money, request) is fixed at creation.
_MUTABLE = frozenset(JOB_COLUMNS) - {"id", "seq", "guild_id", "user_id", "cost", "state", "callback_token",
                                      "created_at", "updated_at", "prompt", "duration", "aspect_ratio",
                                      "owner", "fence"}  # leases: storage.leases only


async def _job_in(conn: Conn, job_id: str, *, lock: bool = False) -> Job:
    # lock=True before writing from what was read: see storage.ledger.lock_job.
    row = await fetchone(conn, "SELECT * FROM jobs WHERE id = ?" + (conn.for_update if lock else ""), (job_id,))
    if row is None:
        raise JobNotFound(job_id)
    return job_from_row(row)


async def end_unfinished_in(conn: Conn, now: float, guild_id: int, user_id: int | None,
                            reason: str) -> list[str]:
    """End every unfinished job of a server (or of one member there) inside the caller's transaction.

    Each job's hold is released (queued: never sent; submitting, running or completed: refunded, since it will
    not be delivered) and the job is marked failed with error_code ERASED, as finish_failed() would. Used by
    the erasure of data, so that nothing is left to charge, post or settle. Returns the ids of the jobs ended.
    """
    member = "" if user_id is None else " AND user_id = ?"
    params: tuple[int, ...] = (guild_id,) if user_id is None else (guild_id, user_id)
    rows = await fetchall(
        conn, f"SELECT id FROM jobs WHERE guild_id = ?{member} AND state IN ({UNFINISHED_SQL}) ORDER BY seq", params
    )
    ended = [str(row["id"]) for row in rows]
    for job_id in ended:
        await settle_in(conn, now, job_id, "release", reason=reason)  # False when an admin released it before
        assignments = ", ".join(f"{name} = ?" for name in (*_FORGET_INTERACTION, "state", "error_code",
                                                            "error_message", "finished_at", "updated_at"))
        await conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?",
                           (*_FORGET_INTERACTION.values(), "failed", ERASED, reason, now, now, job_id))
    return ended


class Jobs:
    """Job rows (`db.jobs`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_with_hold(self, request: NewJob) -> Job:
        """Accept a job: grant/refill, check every quota, insert the job and hold its cost, atomically.

        One BEGIN IMMEDIATE transaction, so concurrent requests can never spend the same credits, and a crash
        leaves either both the job and its hold or neither.

        Raises:
            QuotaRefused: one of Blocked, ChannelNotAllowed, TooManyJobs, Cooldown, DailyBudgetExhausted,
                NotEnoughCredits; nothing was written.
            ValueError: the request itself is malformed (programming error).
        """
        if isinstance(request.cost, bool) or not isinstance(request.cost, int) or request.cost <= 0:
            raise ValueError("a job must cost a positive whole number of credits")
        job_id = uuid.uuid4().hex
        # Admissions in one guild queue in this process first, without holding a pooled connection, so they
        # do not take every connection while they wait for each other and starve settlements (PostgreSQL).
        async with self._db.local_lock(ADMISSION, request.guild_id), self._db.write() as conn:
            # PostgreSQL: admissions in one guild queue here (across processes too), so quotas that span rows
            # (jobs at once, cooldown, daily budget) are checked against every earlier admission's result.
            await conn.lock(GUILD, request.guild_id, shared=True)
            await conn.lock(ADMISSION, request.guild_id)
            now = self._db.now()
            settings, durations = await member_settings_in(  # the member's tier: refill, jobs at once, durations
                conn, await settings_in(conn, request.guild_id), request.user_id, request.role_ids)
            if request.role_ids is not None:
                await remember_roles_in(conn, now, request.guild_id, request.user_id, request.role_ids)
            await touch_member(conn, now, settings, request.user_id)
            await check_admission(conn, now, settings, request, durations=durations)
            await conn.execute(
                "INSERT INTO jobs (id, guild_id, channel_id, user_id, prompt, duration, aspect_ratio, image_url, "
                "cost, state, callback_token, interaction_application_id, interaction_token, "
                "interaction_token_expires_at, upload_limit, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                (job_id, request.guild_id, request.channel_id, request.user_id, request.prompt, request.duration,
                 request.aspect_ratio, request.image_url, request.cost, secrets.token_urlsafe(32),
                 request.interaction_application_id, request.interaction_token,
                 request.interaction_token_expires_at, request.upload_limit, now, now),
            )
            await add_entry(conn, now, request.guild_id, request.user_id, "hold", -request.cost, request.cost,
                            job_id=job_id, reason=f"{request.duration} s video")
            job = await _job_in(conn, job_id)
        log.info("job %s accepted: guild %s, user %s, %s credits held", job_id, job.guild_id, job.user_id, job.cost)
        return job

    async def precheck(self, request: NewJob) -> None:
        """The admission checks of create_with_hold(), read-only: no grant, no hold, no write, no write lock.

        Why: refusing a blocked member (or one out of credits, cooling down, over a limit or budget) must cost
        less than accepting one, so the flow runs this before it downloads or decodes an image. Grants and
        refills not yet applied are counted generously (`projected_available`), so whatever this lets through
        is judged again, atomically, by create_with_hold().

        Raises:
            QuotaRefused: the same typed refusal create_with_hold() would raise for this request now.
        """
        from storage.admission import projected_available

        async with self._db.snapshot() as conn:
            now = self._db.now()
            settings, durations = await member_settings_in(
                conn, await settings_in(conn, request.guild_id), request.user_id, request.role_ids)
            available = await projected_available(conn, now, settings, request.user_id)
            await check_admission(conn, now, settings, request, available=available, durations=durations)

    async def get(self, job_id: str) -> Job | None:
        row = await self._db.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return None if row is None else job_from_row(row)

    async def get_by_callback_token(self, token: str) -> Job | None:
        """The job an upstream callback URL points at, or None for an unknown token."""
        if not token:
            return None
        row = await self._db.fetchone("SELECT * FROM jobs WHERE callback_token = ?", (token,))
        return None if row is None else job_from_row(row)

    async def set_state(self, job_id: str, state: JobState, *, lease: Lease | None = None, **fields: Any) -> Job:
        """Move a job forward and update some of its columns in one transaction.

        Raises:
            JobNotFound: no such job.
            IllegalTransition: the move is not allowed (delivered/failed go through finish_*()).
            LeaseLost: `lease` (or the lease of the job this task drives) no longer matches the row.
            ValueError: a field that cannot be changed.
        """
        unknown = set(fields) - _MUTABLE
        if unknown:
            raise ValueError(f"cannot set job fields {sorted(unknown)}")
        async with self._db.write() as conn:
            job = await _job_in(conn, job_id, lock=True)
            check_lease(job, lease_for(job_id, lease))
            if state not in TRANSITIONS.get(job.state, frozenset()) or state in ("delivered", "failed"):
                raise IllegalTransition(job_id, job.state, state)
            await self._update(conn, job_id, state=state, **fields)
            return await _job_in(conn, job_id)

    async def mark_submitting(self, job_id: str, *, lease: Lease | None = None) -> Job:
        """Record, before it is sent, that a create is about to go out: counted, and its answer outstanding.

        Written first so that the bound on creates holds across restarts and a restart finding
        `create_inflight` knows a billed task may exist.

        Raises:
            JobEnded: the job was cancelled while it waited (see cancel_queued): no create may go out.
            IllegalTransition: the job is past submitting.
        """
        async with self._db.write() as conn:
            job = await _job_in(conn, job_id, lock=True)
            check_lease(job, lease_for(job_id, lease))  # the last word before a create that bills the operator
            if job.state == "failed":  # cancelled while it waited (cancel_queued): too late for a create now
                raise JobEnded(job_id, job.state, "submitting")
            if job.state not in ("queued", "submitting"):
                raise IllegalTransition(job_id, job.state, "submitting")
            await self._update(conn, job_id, state="submitting", attempts=job.attempts + 1, create_inflight=1,
                               submitted_at=self._db.now())
            return await _job_in(conn, job_id)

    async def mark_create_refused(self, job_id: str, *, lease: Lease | None = None) -> Job:
        """The create's answer proved no task was made (429, 5xx, not connected): sending again is safe."""
        return await self.set_state(job_id, "submitting", lease=lease, create_inflight=0)

    async def mark_running(self, job_id: str, task_id: str, *, lease: Lease | None = None) -> Job:
        return await self.set_state(job_id, "running", lease=lease, task_id=task_id, create_inflight=0)

    async def count_unconfirmed(self, guild_id: int | None = None) -> int:
        """Jobs refunded because a create's answer never came: each may be a task the operator paid for."""
        sql = "SELECT COUNT(*) AS n FROM jobs WHERE error_code = 'create_unconfirmed'"
        row = await self._db.fetchone(sql + (" AND guild_id = ?" if guild_id is not None else ""),
                                      (guild_id,) if guild_id is not None else ())
        return int(row["n"]) if row else 0

    async def mark_completed(self, job_id: str, result_url: str, expires_at: float | None, *,
                             lease: Lease | None = None) -> Job:
        return await self.set_state(job_id, "completed", lease=lease, result_url=result_url,
                                    result_expires_at=expires_at)

    async def finish_delivered(self, job_id: str, message_url: str | None, *, lease: Lease | None = None) -> bool:
        """Mark the job delivered and charge its hold, together; False if it had already finished.

        If an admin released the hold earlier, the job is delivered without a charge. The interaction token is
        forgotten in the same transaction (see _FORGET_INTERACTION).

        Raises:
            JobNotFound: no such job.
            IllegalTransition: the job is not completed yet.
        """
        return await self._finish(job_id, "delivered", "charge", "video delivered", lease,
                                  delivered_message_url=message_url)

    async def finish_failed(self, job_id: str, error_code: str, error_message: str, *,
                            lease: Lease | None = None) -> bool:
        """Mark the job failed and release its hold, together; False if it had already finished.

        The interaction token is forgotten in the same transaction: a caller that still wants to tell the
        member through it uses the job object it read before settling.

        Raises:
            JobNotFound: no such job.
        """
        return await self._finish(job_id, "failed", "release", f"job failed: {error_code}", lease, error_code=error_code,
                                  error_message=error_message)

    async def _finish(self, job_id: str, state: JobState, settlement: Settlement, reason: str,
                      lease: Lease | None, **fields: Any) -> bool:
        """The one way a job ends: its state and its settlement in one transaction, at most once (and, with a
        lease, only by its holder: a process that lost the job can neither charge nor release)."""
        async with self._db.write() as conn:
            job = await _job_in(conn, job_id, lock=True)
            check_lease(job, lease_for(job_id, lease))
            if job.is_finished:
                return False
            if state not in TRANSITIONS[job.state]:
                raise IllegalTransition(job_id, job.state, state)
            now = self._db.now()
            await settle_in(conn, now, job_id, settlement, reason=reason)
            await self._update(conn, job_id, state=state, finished_at=now, **fields, **_FORGET_INTERACTION)
        log.info("job %s %s; hold settled by a %s", job_id, state, settlement)
        return True

    async def cancel_queued(self, job_id: str, actor_id: int) -> bool:
        """End a job that is still queued (never sent upstream): failed, hold released, in one transaction.

        Conditional on the state read inside the transaction, and mark_submitting() refuses a job that is no
        longer queued, so a Cancel racing the submission either ends the job before its create or finds it
        submitting and changes nothing: never both. False when the job was no longer queued.

        Raises:
            JobNotFound: no such job.
        """
        async with self._db.write() as conn:
            job = await _job_in(conn, job_id, lock=True)  # the runner's mark_submitting waits on this row
            if job.state != "queued":
                return False
            now = self._db.now()
            who = "its requester" if actor_id == job.user_id else "an admin"
            await settle_in(conn, now, job_id, "release", reason=f"cancelled by {who}", actor_id=actor_id)
            await self._update(conn, job_id, state="failed", finished_at=now, error_code=CANCELLED,
                               error_message=f"Cancelled by {who} before it started.", **_FORGET_INTERACTION)
        log.info("job %s cancelled while queued; hold released", job_id)
        return True

    async def set_status_message(self, job_id: str, channel_id: int, message_id: int, *,
                                 lease: Lease | None = None) -> None:
        """Remember the bot's own public status message, so edits survive a restart."""
        async with self._db.write() as conn:
            check_lease(await _job_in(conn, job_id, lock=True), lease_for(job_id, lease))
            await self._update(conn, job_id, status_channel_id=channel_id, status_message_id=message_id)

    async def forget_expired_interactions(self, now: float) -> int:
        """Null every interaction token whose expiry has passed (or was never known); how many were forgotten.

        A sweep for tokens of jobs still in progress (settled jobs forget theirs at once). It leaves updated_at
        alone: the runner reads it to tell a job resumed after a restart from one it is driving itself.
        """
        async with self._db.write() as conn:
            cursor = await conn.execute(
                "UPDATE jobs SET interaction_token = NULL, interaction_token_expires_at = NULL, "
                "interaction_application_id = NULL WHERE interaction_token IS NOT NULL "
                "AND (interaction_token_expires_at IS NULL OR interaction_token_expires_at <= ?)",
                (now,),
            )
            count = cursor.rowcount
        if count:
            log.info("forgot %s expired interaction tokens", count)
        return count

    async def unfinished_for(self, guild_id: int, user_id: int | None = None) -> list[Job]:
        """A server's (or one member's there) unfinished jobs, oldest first: what an erasure must stop first."""
        member = "" if user_id is None else " AND user_id = ?"
        params: tuple[int, ...] = (guild_id,) if user_id is None else (guild_id, user_id)
        rows = await self._db.fetchall(
            f"SELECT * FROM jobs WHERE guild_id = ?{member} AND state IN ({UNFINISHED_SQL}) ORDER BY seq", params
        )
        return [job_from_row(r) for r in rows]

    async def unfinished(self) -> list[Job]:
        """Every job a restarted bot must resume, oldest first."""
        rows = await self._db.fetchall(f"SELECT * FROM jobs WHERE state IN ({UNFINISHED_SQL}) ORDER BY seq")
        return [job_from_row(r) for r in rows]

    async def count_by_state(self) -> dict[str, int]:
        """How many jobs are in each state, everywhere (the metrics' gauges)."""
        rows = await self._db.fetchall("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        return {str(row["state"]): int(row["n"]) for row in rows}

    async def running_count(self, guild_id: int | None = None) -> int:
        """Jobs holding a slot (submitting, running, or delivering), in one server or everywhere."""
        sql = f"SELECT COUNT(*) AS n FROM jobs WHERE state IN ({IN_SLOT_SQL})"
        row = await (self._db.fetchone(sql) if guild_id is None
                     else self._db.fetchone(sql + " AND guild_id = ?", (guild_id,)))
        return int(row["n"]) if row is not None else 0

    async def recent_for_user(self, guild_id: int, user_id: int, limit: int = 10) -> list[Job]:
        """A member's latest jobs in this server, newest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM jobs WHERE guild_id = ? AND user_id = ? ORDER BY seq DESC LIMIT ?",
            (guild_id, user_id, max(0, int(limit))),
        )
        return [job_from_row(r) for r in rows]

    async def find(self, guild_id: int, id_or_prefix: str) -> Job | None:
        """A job of this server by its id or an unambiguous prefix of at least 6 characters (as admins see it)."""
        text = id_or_prefix.strip().lower()
        if len(text) < 6 or not all(c in "0123456789abcdef" for c in text):
            return None
        rows = await self._db.fetchall(
            "SELECT * FROM jobs WHERE guild_id = ? AND substr(id, 1, ?) = ? ORDER BY seq LIMIT 2",
            (guild_id, len(text), text),
        )
        return job_from_row(rows[0]) if len(rows) == 1 else None

    async def active_for_guild(self, guild_id: int) -> list[Job]:
        """The server's unfinished jobs, oldest first."""
        rows = await self._db.fetchall(
            f"SELECT * FROM jobs WHERE guild_id = ? AND state IN ({UNFINISHED_SQL}) ORDER BY seq", (guild_id,)
        )
        return [job_from_row(r) for r in rows]

    async def recent_run_seconds(self, guild_id: int, limit: int = 20) -> list[float]:
        """How long the server's latest delivered jobs took from their create to delivery, newest first (what
        a queued job's estimated start is judged by)."""
        rows = await self._db.fetchall(
            "SELECT finished_at - submitted_at AS took FROM jobs WHERE guild_id = ? AND state = 'delivered' "
            "AND submitted_at IS NOT NULL AND finished_at IS NOT NULL ORDER BY seq DESC LIMIT ?",
            (guild_id, max(0, int(limit))),
        )
        return [max(0.0, float(r["took"])) for r in rows]

    async def _update(self, conn: Conn, job_id: str, **fields: Any) -> None:
        # Column names come from the _MUTABLE whitelist or this module, never from input.
        fields["updated_at"] = self._db.now()
        assignments = ", ".join(f"{name} = ?" for name in fields)
        await conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*fields.values(), job_id))
