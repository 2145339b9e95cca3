"""What admins read about their server (spend, a member's account) and the erasure of a member or server."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

from storage.conn import GUILD, fetchall
from storage.jobs import end_unfinished_in
from storage.ledger import Balance, LedgerEntry
from storage.models import Job
from storage.periods import day_start, utc

if TYPE_CHECKING:
    from storage.db import Database

log = logging.getLogger(__name__)

DOLLARS_PER_CREDIT = 0.005  # mirrors bot.pricing; storage does not import the bot
MAX_DAYS = 366


@dataclass(frozen=True, slots=True)
class MemberUsage:
    user_id: int
    jobs: int
    credits_charged: int


@dataclass(frozen=True, slots=True)
class DayUsage:
    day: date
    jobs: int
    credits_charged: int
    credits_returned: int  # released holds and admin refunds


@dataclass(frozen=True, slots=True)
class Usage:
    """A server's spend over the last `days` UTC days (today included).

    `dollars` is what the delivered videos cost the operator upstream: credits_charged * $0.005. Admin
    refunds give credits back to members but do not undo that bill.
    """

    guild_id: int
    days: int
    since: float
    jobs_by_state: dict[str, int]
    jobs_total: int
    credits_charged: int
    credits_refunded: int  # admin refunds after a charge
    credits_released: int  # holds given back (failed jobs, admin refunds before delivery)
    dollars: float
    top_members: list[MemberUsage] = field(default_factory=list)
    daily: list[DayUsage] = field(default_factory=list)  # one per day, oldest first, zeros included


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure did: rows deleted per table (as stored before it), and the unfinished jobs it ended."""

    counts: dict[str, int]
    ended_job_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MemberSummary:
    guild_id: int
    user_id: int
    balance: Balance
    blocked_reason: str | None
    entries: list[LedgerEntry]
    jobs: list[Job]


class Reports:
    """Read-mostly views for admins, and data erasure (`db.reports`). Every query is scoped to one guild."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def guild_usage(self, guild_id: int, days: int = 30, *, top: int = 10) -> Usage:
        """Jobs, credits and dollars for the server over the last `days` days, with a per-day series."""
        days = max(1, min(int(days), MAX_DAYS))
        now = self._db.now()
        since = day_start(now) - (days - 1) * 86_400
        async with self._db.snapshot() as conn:
            states = await fetchall(
                conn, "SELECT state, COUNT(*) AS n FROM jobs WHERE guild_id = ? AND created_at >= ? GROUP BY state",
                (guild_id, since),
            )
            sums = await fetchall(
                conn,
                "SELECT kind, COALESCE(SUM(CASE kind WHEN 'refund' THEN delta_available ELSE -delta_held END), 0) AS credits "
                "FROM ledger WHERE guild_id = ? AND created_at >= ? AND kind IN ('charge', 'release', 'refund') "
                "GROUP BY kind",
                (guild_id, since),
            )
            top_rows = await fetchall(
                conn,
                "SELECT user_id, COUNT(*) AS jobs, SUM(-delta_held) AS credits FROM ledger "
                "WHERE guild_id = ? AND created_at >= ? AND kind = 'charge' "
                "GROUP BY user_id ORDER BY credits DESC, user_id LIMIT ?",
                (guild_id, since, max(0, top)),
            )
            day_rows = await fetchall(
                conn,
                f"SELECT {conn.day_number('created_at')} AS d, "
                "COALESCE(SUM(CASE WHEN kind = 'hold' THEN 1 ELSE 0 END), 0) AS jobs, "
                "COALESCE(SUM(CASE WHEN kind = 'charge' THEN -delta_held ELSE 0 END), 0) AS charged, "
                "COALESCE(SUM(CASE WHEN kind IN ('release', 'refund') THEN delta_available ELSE 0 END), 0) "
                "AS returned "
                "FROM ledger WHERE guild_id = ? AND created_at >= ? GROUP BY d",
                (since, guild_id, since),
            )
        by_kind = {row["kind"]: int(row["credits"]) for row in sums}
        by_state = {row["state"]: int(row["n"]) for row in states}
        per_day = {int(row["d"]): row for row in day_rows}
        first = utc(since).date()
        daily = []
        for offset in range(days):
            row = per_day.get(offset)
            daily.append(DayUsage(
                first + timedelta(days=offset),
                int(row["jobs"]) if row else 0,
                int(row["charged"]) if row else 0,
                int(row["returned"]) if row else 0,
            ))
        charged = by_kind.get("charge", 0)
        return Usage(
            guild_id=guild_id, days=days, since=since, jobs_by_state=by_state, jobs_total=sum(by_state.values()),
            credits_charged=charged, credits_refunded=by_kind.get("refund", 0),
            credits_released=by_kind.get("release", 0), dollars=round(charged * DOLLARS_PER_CREDIT, 4),
            top_members=[MemberUsage(int(r["user_id"]), int(r["jobs"]), int(r["credits"])) for r in top_rows],
            daily=daily,
        )

    async def member_summary(self, guild_id: int, user_id: int, *, limit: int = 10) -> MemberSummary:
        """A member's balance, block status, latest ledger entries and latest jobs, for `quota show`."""
        balance = await self._db.ledger.balance(guild_id, user_id)
        return MemberSummary(
            guild_id=guild_id,
            user_id=user_id,
            balance=balance,
            blocked_reason=await self._db.guilds.is_blocked(guild_id, user_id),
            entries=await self._db.ledger.entries(guild_id, user_id, limit),
            jobs=await self._db.jobs.recent_for_user(guild_id, user_id, limit),
        )

    async def erase(self, guild_id: int, user_id: int | None) -> Erasure:
        """End a server's (or one member's) unfinished jobs, then erase all their rows, in one transaction.

        Ending first (holds released, jobs failed with error_code "erased") means no moment exists where a job
        is gone but its money is not settled, and the log says which jobs were stopped. The caller must have
        stopped the runner's work on those jobs before (JobRunner.abort), so nothing posts, charges or grants
        starting credits afterwards; a job the runner still drives would find its row gone.
        """
        # The ledger's no-delete trigger lets rows go only while a permit for exactly this guild (and member)
        # exists; the permit is written and removed inside this one transaction, so it never outlives it.
        member = "" if user_id is None else " AND user_id = ?"
        params: tuple[int, ...] = (guild_id,) if user_id is None else (guild_id, user_id)
        tables = ["ledger", "jobs", "balances", "refill_periods", "blocked_members", "member_roles"]
        counts: dict[str, int] = {}
        async with self._db.write() as conn:
            # PostgreSQL: no new member of this guild appears meanwhile (every member write holds the guild
            # lock shared), and a job or balance being written now finishes before we delete it (row locks).
            await conn.lock(GUILD, guild_id)
            await fetchall(conn, f"SELECT id FROM jobs WHERE guild_id = ?{member}{conn.for_update}", params)
            await fetchall(conn, f"SELECT user_id FROM balances WHERE guild_id = ?{member}{conn.for_update}", params)
            now = self._db.now()
            before = await fetchall(conn, f"SELECT COUNT(*) AS n FROM ledger WHERE guild_id = ?{member}", params)
            ended = await end_unfinished_in(conn, now, guild_id, user_id, "data erased by an admin")
            await conn.execute("INSERT INTO ledger_erasure (guild_id, user_id) VALUES (?, ?)", (guild_id, user_id))
            for table in tables:  # ledger first: its entries reference jobs
                cursor = await conn.execute(f"DELETE FROM {table} WHERE guild_id = ?{member}", params)
                counts[table] = cursor.rowcount
            if user_id is None:
                cursor = await conn.execute("DELETE FROM guild_settings WHERE guild_id = ?", (guild_id,))
                counts["guild_settings"] = cursor.rowcount
                for table in ("role_tiers", "tier_audit"):  # the server's tiers and who changed them
                    cursor = await conn.execute(f"DELETE FROM {table} WHERE guild_id = ?", (guild_id,))
                    counts[table] = cursor.rowcount
            await conn.execute("DELETE FROM ledger_erasure")
        # Admins read what was stored before they asked: the releases written just above are not counted.
        counts["ledger"] = int(before[0]["n"])
        if ended:
            log.info("ended unfinished jobs before erasing", extra={"guild": guild_id, "jobs": ",".join(ended)})
        log.info("erased data of guild %s member %s: %s", guild_id, user_id, counts)
        return Erasure(counts=counts, ended_job_ids=tuple(ended))
