"""Credits: an append-only ledger of entries, with balances cached by a trigger in the same statement.

Entries are pairs (delta_available, delta_held): grant/refill/adjust (+x, 0), hold (-c, +c), charge (0, -c),
release (+c, -c), refund (+c, 0). The schema refuses a second hold, settlement or refund for a job and any
negative balance, so a bug here cannot spend the operator's money twice.

Amounts are bounded: one entry moves at most MAX_ENTRY credits either way and a member holds at most
MAX_BALANCE (available + held) in one server. Admin operations refuse anything else with AmountOutOfRange
before writing; migration 0004 makes the database refuse it too, so no amount can leave SQLite's 64-bit
integers (beyond them SQLite silently stores a REAL and balances stop adding up).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from storage.conn import GUILD, Conn, Row, fetchall, fetchone
from storage.errors import AmountOutOfRange
from storage.guilds import GuildSettings, settings_in
from storage.models import LedgerKind, Settlement
from storage.periods import next_period_start, period_key
from storage.tiers import member_settings_in

if TYPE_CHECKING:
    from storage.db import Database

log = logging.getLogger(__name__)

MAX_ENTRY = 1_000_000_000  # credits one ledger entry may move either way ($5,000,000); mirrored in 0004
MAX_BALANCE = 1_000_000_000  # a member's available + held in one server; mirrored in migration 0004


def check_amount(amount: object, *, low: int = -MAX_ENTRY, what: str = "An amount") -> int:
    """`amount` as an int if it is a whole number from `low` to MAX_ENTRY.

    Raises:
        AmountOutOfRange: it is not (a bool, a float, text, or too large either way); the message is for admins.
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or not low <= amount <= MAX_ENTRY:
        raise AmountOutOfRange(f"{what} must be a whole number of credits from {low:,} to {MAX_ENTRY:,}.")
    return amount


def _check_balance(available: int, held: int) -> None:
    if available + held > MAX_BALANCE:
        raise AmountOutOfRange(
            f"That would give the member {available + held:,} credits; a member can have at most "
            f"{MAX_BALANCE:,} (including credits held by running jobs)."
        )


@dataclass(frozen=True, slots=True)
class Balance:
    """What a member may spend now, what running jobs hold, and when the next refill comes (UTC)."""

    available: int
    held: int
    next_refill_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One movement of credits, with who caused it (actor_id None = the bot) and why."""

    id: int
    guild_id: int
    user_id: int
    kind: LedgerKind
    delta_available: int
    delta_held: int
    job_id: str | None
    actor_id: int | None
    reason: str
    created_at: float


def entry_from_row(row: Row) -> LedgerEntry:
    return LedgerEntry(
        id=row["id"], guild_id=row["guild_id"], user_id=row["user_id"], kind=row["kind"],
        delta_available=row["delta_available"], delta_held=row["delta_held"], job_id=row["job_id"],
        actor_id=row["actor_id"], reason=row["reason"], created_at=row["created_at"],
    )


def next_refill(settings: GuildSettings, now: float) -> datetime | None:
    """When this server's next top-up happens, or None if it never tops up."""
    if settings.refill_amount <= 0:
        return None
    return next_period_start(settings.refill_period, now)


# ---- building blocks used inside a write transaction (also by storage.jobs) --------------------------------


async def add_entry(
    conn: Conn, now: float, guild_id: int, user_id: int, kind: LedgerKind, delta_available: int,
    delta_held: int, *, job_id: str | None = None, actor_id: int | None = None, reason: str = "",
    period: str | None = None,
) -> int:
    """Append one entry and return its id; the ledger_apply trigger moves the cached balance in the same statement."""
    row = await fetchone(
        conn,
        "INSERT INTO ledger (guild_id, user_id, kind, delta_available, delta_held, job_id, actor_id, reason, "
        "period_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (guild_id, user_id, kind, delta_available, delta_held, job_id, actor_id, reason, period, now),
    )
    return int(row["id"]) if row is not None else 0


async def touch_member(conn: Conn, now: float, settings: GuildSettings, user_id: int) -> None:
    """Give a member new to this server their starting credits, then apply this period's lazy refill.

    Both are idempotent: the balances row marks a member as seen, and refill_periods marks a period as done
    (whether a top-up was needed or not), so a member is topped up at most once per period. On PostgreSQL a
    concurrent transaction inserting the same row waits for the first to commit and then inserts nothing,
    and the guild's shared lock keeps an erasure of this guild from interleaving.
    """
    guild_id = settings.guild_id
    await conn.lock(GUILD, guild_id, shared=True)
    cursor = await conn.execute(
        "INSERT INTO balances (guild_id, user_id, available, held, created_at) VALUES (?, ?, 0, 0, ?) "
        "ON CONFLICT DO NOTHING",
        (guild_id, user_id, now),
    )
    if cursor.rowcount == 1 and settings.starting_credits > 0:
        await add_entry(conn, now, guild_id, user_id, "grant", settings.starting_credits, 0, reason="starting credits")
    key = period_key(settings.refill_period, now)
    if key is None or settings.refill_amount <= 0:
        return
    cursor = await conn.execute(
        "INSERT INTO refill_periods (guild_id, user_id, period_key, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        (guild_id, user_id, key, now),
    )
    if cursor.rowcount != 1:
        return
    # Credits held by running jobs are still the member's: they come back if the job fails, so the top-up
    # counts them, or a release after the refill would land on top of a full balance.
    available, held = await balance_in(conn, guild_id, user_id, lock=True)
    if available + held < settings.refill_amount:
        await add_entry(
            conn, now, guild_id, user_id, "refill", settings.refill_amount - available - held, 0,
            reason=f"{settings.refill_period} refill to {settings.refill_amount}", period=key,
        )


async def balance_in(conn: Conn, guild_id: int, user_id: int, *, lock: bool = False) -> tuple[int, int]:
    """(available, held) from the cache, inside the caller's transaction.

    `lock=True` when the caller writes from what it read: on PostgreSQL the balance row stays locked until
    the transaction ends, so nobody spends those credits in between (SQLite's single writer already
    guarantees that).
    """
    row = await fetchone(
        conn, "SELECT available, held FROM balances WHERE guild_id = ? AND user_id = ?" + (conn.for_update if lock else ""),
        (guild_id, user_id),
    )
    return (0, 0) if row is None else (int(row["available"]), int(row["held"]))


async def lock_job(conn: Conn, job_id: str) -> bool:
    """Lock the job's row until the transaction ends (PostgreSQL); False if there is no such job.

    Every transaction that settles or refunds a job, or moves its state, takes this lock first, so two of
    them never both see "not settled yet", and an erasure (which locks the same rows) waits or is waited for.
    """
    return await fetchone(conn, "SELECT id FROM jobs WHERE id = ?" + conn.for_update, (job_id,)) is not None


async def job_entries(conn: Conn, job_id: str) -> dict[LedgerKind, LedgerEntry]:
    """The hold, charge, release and refund of one job, by kind (the schema allows one of each)."""
    rows = await fetchall(conn, "SELECT * FROM ledger WHERE job_id = ? ORDER BY id", (job_id,))
    return {row["kind"]: entry_from_row(row) for row in rows}


async def settle_in(conn: Conn, now: float, job_id: str, kind: Settlement, *, reason: str = "",
                    actor_id: int | None = None) -> bool:
    """Turn a job's open hold into a charge or a release; False if it was already settled.

    Raises:
        LookupError: the job has no hold.
    """
    await lock_job(conn, job_id)
    entries = await job_entries(conn, job_id)
    hold = entries.get("hold")
    if hold is None:
        raise LookupError(f"job {job_id!r} has no hold")
    if "charge" in entries or "release" in entries:
        return False
    amount = hold.delta_held
    delta_available = 0 if kind == "charge" else amount
    await add_entry(conn, now, hold.guild_id, hold.user_id, kind, delta_available, -amount, job_id=job_id,
                    actor_id=actor_id, reason=reason)
    return True


# ---- the repository ---------------------------------------------------------------------------------------


class Ledger:
    """Balances and credit movements (`db.ledger`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def balance(self, guild_id: int, user_id: int, role_ids: Sequence[int] | None = None) -> Balance:
        """A member's balance, after their starting grant and this period's refill if those are due.

        `role_ids`: the member's roles on the interaction at hand, which decide their tier's refill (None: the
        roles last seen, see storage.tiers).
        """
        now = self._db.now()
        async with self._db.snapshot() as conn:  # fast path: nothing to write
            settings, _ = await member_settings_in(conn, await settings_in(conn, guild_id), user_id, role_ids)
            key = period_key(settings.refill_period, now) if settings.refill_amount > 0 else None
            row = await fetchone(
                conn,
                "SELECT available, held, EXISTS (SELECT 1 FROM refill_periods r WHERE r.guild_id = b.guild_id "
                "AND r.user_id = b.user_id AND r.period_key = ?) AS refilled "
                "FROM balances b WHERE guild_id = ? AND user_id = ?",
                (key or "", guild_id, user_id),
            )
        if row is not None and (key is None or row["refilled"]):
            return Balance(row["available"], row["held"], next_refill(settings, now))
        async with self._db.write() as conn:
            settings, _ = await member_settings_in(conn, await settings_in(conn, guild_id), user_id, role_ids)
            await touch_member(conn, now, settings, user_id)
            available, held = await balance_in(conn, guild_id, user_id)
        return Balance(available, held, next_refill(settings, now))

    async def adjust(self, guild_id: int, user_id: int, delta: int, actor_id: int | None, reason: str) -> Balance:
        """Add (or with a negative delta, take) credits; a balance never drops below 0.

        The entry records the delta actually applied, so the ledger stays the truth.

        Raises:
            AmountOutOfRange: delta is not a whole number within ±MAX_ENTRY, or the balance would pass
                MAX_BALANCE; nothing was written.
        """
        delta = check_amount(delta)
        async with self._db.write() as conn:
            now = self._db.now()
            settings, _ = await member_settings_in(conn, await settings_in(conn, guild_id), user_id)  # their tier
            await touch_member(conn, now, settings, user_id)
            available, held = await balance_in(conn, guild_id, user_id, lock=True)
            applied = max(delta, -available)
            _check_balance(available + applied, held)
            await add_entry(conn, now, guild_id, user_id, "adjust", applied, 0, actor_id=actor_id, reason=reason)
            available, held = await balance_in(conn, guild_id, user_id)
        if applied != delta:
            log.info("adjust clamped: asked %s, applied %s (guild %s, user %s)", delta, applied, guild_id, user_id)
        return Balance(available, held, next_refill(settings, now))

    async def set_balance(self, guild_id: int, user_id: int, amount: int, actor_id: int | None,
                          reason: str) -> Balance:
        """Make a member's available credits exactly `amount` (recorded as an adjust of the difference).

        Raises:
            AmountOutOfRange (a ValueError): amount is not a whole number from 0 to MAX_ENTRY, or with the
                credits held by running jobs it would pass MAX_BALANCE; nothing was written.
        """
        amount = check_amount(amount, low=0, what="A balance")
        async with self._db.write() as conn:
            now = self._db.now()
            settings, _ = await member_settings_in(conn, await settings_in(conn, guild_id), user_id)  # their tier
            await touch_member(conn, now, settings, user_id)
            available, held = await balance_in(conn, guild_id, user_id, lock=True)
            _check_balance(amount, held)
            await add_entry(conn, now, guild_id, user_id, "adjust", amount - available, 0, actor_id=actor_id,
                            reason=reason)
            available, held = await balance_in(conn, guild_id, user_id)
        return Balance(available, held, next_refill(settings, now))

    async def refund(self, job_id: str, actor_id: int | None, reason: str) -> bool:
        """An admin's refund: release a job still held, or pay back a charged one; at most once per job.

        Returns:
            True if credits went back to the member now; False if the job was already released or refunded.
        Raises:
            LookupError: no such job (or it has no hold).
            AmountOutOfRange: paying back a charge would take the member past MAX_BALANCE.
        """
        async with self._db.write() as conn:
            now = self._db.now()
            await lock_job(conn, job_id)
            entries = await job_entries(conn, job_id)
            if "hold" not in entries:
                raise LookupError(f"job {job_id!r} has no hold")
            if "release" in entries or "refund" in entries:
                return False
            charge = entries.get("charge")
            if charge is None:
                return await settle_in(conn, now, job_id, "release", reason=reason, actor_id=actor_id)
            available, held = await balance_in(conn, charge.guild_id, charge.user_id)
            _check_balance(available - charge.delta_held, held)
            await add_entry(conn, now, charge.guild_id, charge.user_id, "refund", -charge.delta_held, 0,
                            job_id=job_id, actor_id=actor_id, reason=reason)
            return True

    async def entries(self, guild_id: int, user_id: int, limit: int = 10) -> list[LedgerEntry]:
        """A member's latest entries in this server, newest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM ledger WHERE guild_id = ? AND user_id = ? ORDER BY id DESC LIMIT ?",
            (guild_id, user_id, max(0, int(limit))),
        )
        return [entry_from_row(row) for row in rows]

    async def for_job(self, job_id: str) -> dict[LedgerKind, LedgerEntry]:
        """A job's entries by kind (hold, charge, release, refund): how it was actually settled."""
        rows = await self._db.fetchall("SELECT * FROM ledger WHERE job_id = ? ORDER BY id", (job_id,))
        return {row["kind"]: entry_from_row(row) for row in rows}

    async def verify(self) -> list[str]:
        """Recompute every balance and job settlement from the ledger; the list of problems (empty = sound)."""
        from storage.verify import verify

        async with self._db.snapshot() as conn:
            return await verify(conn)
