"""The checks a new job passes before its credits are held, run inside the hold's own transaction."""

from __future__ import annotations

import math

from storage.conn import Conn, fetchone
from storage.errors import (
    Blocked,
    ChannelNotAllowed,
    Cooldown,
    DailyBudgetExhausted,
    DurationNotAllowed,
    NotEnoughCredits,
    TooManyJobs,
)
from storage.guilds import GuildSettings, blocked_reason_in
from storage.ledger import balance_in, next_refill
from storage.models import UNFINISHED_SQL, NewJob
from storage.periods import day_start, next_period_start, period_key


async def check_admission(conn: Conn, now: float, settings: GuildSettings, request: NewJob, *,
                          available: int | None = None, durations: tuple[int, ...] | None = None) -> None:
    """Raise the first refusal that applies, in the order members find most useful to hear them.

    Runs after the member's starting grant and refill, so the balance it checks is the one they would see.
    `available` replaces the stored balance when the caller could not apply the grant and refill (the
    read-only pre-check passes `projected_available()`); otherwise the balance is read in `conn`.
    The caller holds the guild's admission lock (PostgreSQL), so counts, cooldown and the daily budget cannot
    change under it except downwards; the balance row is locked here before it is read.

    Raises:
        Blocked, ChannelNotAllowed, DurationNotAllowed (`durations`: what the member's tier allows),
        TooManyJobs, Cooldown, DailyBudgetExhausted, NotEnoughCredits.
    """
    guild_id, user_id = request.guild_id, request.user_id
    reason = await blocked_reason_in(conn, guild_id, user_id)
    if reason is not None:
        raise Blocked(reason)
    allowed = settings.allowed_channel_ids
    if allowed and request.channel_id not in allowed and request.parent_channel_id not in allowed:
        raise ChannelNotAllowed(allowed)
    if durations is not None and request.duration not in durations:  # the member's tier (storage.tiers)
        raise DurationNotAllowed(request.duration, durations)
    row = await fetchone(
        conn,
        f"SELECT COUNT(*) AS n FROM jobs WHERE guild_id = ? AND user_id = ? AND state IN ({UNFINISHED_SQL})",
        (guild_id, user_id),
    )
    if row is not None and row["n"] >= settings.max_jobs_per_member:
        raise TooManyJobs(settings.max_jobs_per_member)
    if settings.cooldown_seconds > 0:
        row = await fetchone(
            conn, "SELECT MAX(created_at) AS last FROM jobs WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
        )
        if row is not None and row["last"] is not None:
            wait = settings.cooldown_seconds - (now - row["last"])
            if wait > 0:
                raise Cooldown(max(1, math.ceil(wait)))
    if settings.daily_budget > 0:
        spent = await spent_today(conn, guild_id, now)
        if spent + request.cost > settings.daily_budget:
            resets_at = next_period_start("daily", now)
            assert resets_at is not None
            raise DailyBudgetExhausted(settings.daily_budget, spent, request.cost, resets_at)
    if available is None:
        available, _ = await balance_in(conn, guild_id, user_id, lock=True)
    if available < request.cost:
        raise NotEnoughCredits(available, request.cost, next_refill(settings, now))


async def projected_available(conn: Conn, now: float, settings: GuildSettings, user_id: int) -> int:
    """At most what the member would have available once `touch_member` ran, computed without writing.

    A member new to the server would get the starting credits; a refill not yet applied this period would top
    them up to at most `refill_amount`. Both are counted generously, so the pre-check that uses this never
    refuses someone the atomic check would accept; the atomic check in `create_with_hold` stays the judge.
    """
    row = await fetchone(
        conn, "SELECT available FROM balances WHERE guild_id = ? AND user_id = ?", (settings.guild_id, user_id)
    )
    available = max(0, settings.starting_credits) if row is None else int(row["available"])
    key = period_key(settings.refill_period, now)
    if key is not None and settings.refill_amount > 0:
        done = await fetchone(
            conn, "SELECT 1 AS done FROM refill_periods WHERE guild_id = ? AND user_id = ? AND period_key = ?",
            (settings.guild_id, user_id, key),
        )
        if done is None:
            available = max(available, settings.refill_amount)
    return available


async def spent_today(conn: Conn, guild_id: int, now: float) -> int:
    """Net credits of this server's jobs created today (UTC): holds and charges count, releases don't."""
    row = await fetchone(
        conn,
        "SELECT COALESCE(SUM(j.cost), 0) AS spent FROM jobs j WHERE j.guild_id = ? AND j.created_at >= ? "
        "AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.job_id = j.id AND l.kind = 'release')",
        (guild_id, day_start(now)),
    )
    return int(row["spent"]) if row is not None else 0
