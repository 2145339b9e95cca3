"""`Jobs.precheck()`: the admission checks without writing, so a refusal costs a read (issue 10, item 7).

It must refuse with the same typed error as `create_with_hold()` would, never refuse what the hold would
accept (pending starting credits and refills count), and leave every table exactly as it found it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from storage.db import Database
from storage.errors import (
    Blocked,
    ChannelNotAllowed,
    Cooldown,
    DailyBudgetExhausted,
    NotEnoughCredits,
    QuotaRefused,
    TooManyJobs,
)

from .conftest import ALICE, BOB, GUILD, Clock, request

TABLES = ("jobs", "ledger", "balances", "refill_periods", "blocked_members", "guild_settings")


async def snapshot(db: Database) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    for table in TABLES:
        rows = await db.fetchall(f"SELECT * FROM {table} ORDER BY 1")
        out[table] = [tuple(r) for r in rows]
    return out


async def nothing(db: Database, clock: Clock) -> None:
    return None


async def blocked(db: Database, clock: Clock) -> None:
    await db.guilds.block(GUILD, ALICE, "spam", BOB)


async def other_channel(db: Database, clock: Clock) -> None:
    await db.guilds.update(GUILD, allowed_channel_ids=(999,))


async def busy(db: Database, clock: Clock) -> None:
    await db.guilds.update(GUILD, max_jobs_per_member=1, cooldown_seconds=0)
    await db.jobs.create_with_hold(request())


async def cooling_down(db: Database, clock: Clock) -> None:
    await db.jobs.create_with_hold(request())
    clock.advance(5)


async def over_budget(db: Database, clock: Clock) -> None:
    await db.guilds.update(GUILD, daily_budget=150, cooldown_seconds=0)
    await db.jobs.create_with_hold(request(BOB))


async def broke(db: Database, clock: Clock) -> None:
    await db.ledger.set_balance(GUILD, ALICE, 50, BOB, "test")


async def broke_with_a_refill_due(db: Database, clock: Clock) -> None:
    await db.guilds.update(GUILD, refill_amount=200, refill_period="weekly")
    await db.ledger.set_balance(GUILD, ALICE, 0, BOB, "test")
    clock.advance(7 * 86_400)  # next week: the refill is applied lazily by the hold, not by the pre-check


async def broke_with_the_refill_done(db: Database, clock: Clock) -> None:
    await db.guilds.update(GUILD, refill_amount=200, refill_period="weekly")
    await db.ledger.set_balance(GUILD, ALICE, 0, BOB, "test")


async def new_member_asking_too_much(db: Database, clock: Clock) -> None:
    await db.guilds.update(GUILD, starting_credits=200)


CASES: list[tuple[str, Callable[[Database, Clock], Awaitable[None]], int, type[QuotaRefused] | None]] = [
    ("new-member", nothing, 4, None),
    ("new-member-over-starting-credits", new_member_asking_too_much, 12, NotEnoughCredits),
    ("blocked", blocked, 4, Blocked),
    ("other-channel", other_channel, 4, ChannelNotAllowed),
    ("too-many-jobs", busy, 4, TooManyJobs),
    ("cooldown", cooling_down, 4, Cooldown),
    ("daily-budget", over_budget, 4, DailyBudgetExhausted),
    ("balance", broke, 4, NotEnoughCredits),
    ("refill-due", broke_with_a_refill_due, 4, None),
    ("refill-done", broke_with_the_refill_done, 4, NotEnoughCredits),
]


@pytest.mark.parametrize(("prepare", "duration", "refusal"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_precheck_refuses_as_the_hold_would_and_writes_nothing(
    db: Database, clock: Clock, prepare: Callable[[Database, Clock], Awaitable[None]], duration: int,
    refusal: type[QuotaRefused] | None,
) -> None:
    await prepare(db, clock)
    before = await snapshot(db)
    job = request(duration=duration)
    if refusal is None:
        await db.jobs.precheck(job)
    else:
        with pytest.raises(refusal) as precheck_error:
            await db.jobs.precheck(job)
        assert precheck_error.value.user_message
    assert await snapshot(db) == before  # read-only: no grant, refill, hold or job
    if refusal is None:
        await db.jobs.create_with_hold(job)  # what the pre-check let through, the hold accepts here too
    else:
        with pytest.raises(refusal):
            await db.jobs.create_with_hold(job)
    assert await db.ledger.verify() == []
