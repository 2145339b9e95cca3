"""Balances, admin adjustments, settlement and refunds, and lazy refills across period boundaries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage.db import Database
from storage.errors import AmountOutOfRange
from storage.ledger import MAX_BALANCE, MAX_ENTRY
from tests.storage.ledger_ops import release, settle

from .conftest import ALICE, BOB, GUILD, OTHER_GUILD, Clock, request, run_to_completed


async def test_new_member_gets_starting_credits_once(db: Database) -> None:
    assert (await db.ledger.balance(GUILD, ALICE)).available == 200
    assert (await db.ledger.balance(GUILD, ALICE)).available == 200
    entries = await db.ledger.entries(GUILD, ALICE)
    assert [(e.kind, e.delta_available, e.actor_id) for e in entries] == [("grant", 200, None)]
    assert (await db.ledger.balance(OTHER_GUILD, ALICE)).available == 200  # each server grants its own


async def test_starting_credits_follow_the_server_setting(db: Database) -> None:
    await db.guilds.update(GUILD, starting_credits=0)
    assert (await db.ledger.balance(GUILD, ALICE)).available == 0
    assert await db.ledger.entries(GUILD, ALICE) == []


async def test_adjust_clamps_at_zero_and_records_what_was_applied(db: Database) -> None:
    balance = await db.ledger.adjust(GUILD, ALICE, 50, actor_id=BOB, reason="gift")
    assert balance.available == 250
    balance = await db.ledger.adjust(GUILD, ALICE, -1000, actor_id=BOB, reason="abuse")
    assert balance.available == 0
    latest = (await db.ledger.entries(GUILD, ALICE, limit=1))[0]
    assert (latest.kind, latest.delta_available, latest.actor_id, latest.reason) == ("adjust", -250, BOB, "abuse")
    assert await db.ledger.verify() == []


async def test_set_balance(db: Database) -> None:
    assert (await db.ledger.set_balance(GUILD, ALICE, 1234, actor_id=BOB, reason="event")).available == 1234
    assert (await db.ledger.set_balance(GUILD, ALICE, 0, actor_id=BOB, reason="reset")).available == 0
    with pytest.raises(ValueError, match="from 0 to"):
        await db.ledger.set_balance(GUILD, ALICE, -5, actor_id=BOB, reason="x")
    assert await db.ledger.verify() == []


# ---- bounded amounts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [2**63, 10**30, MAX_ENTRY + 1, 1.5, "10", True, -1])
async def test_set_balance_refuses_amounts_out_of_range_before_any_write(db: Database, amount: object) -> None:
    with pytest.raises(AmountOutOfRange, match="from 0 to 1,000,000,000") as caught:
        await db.ledger.set_balance(GUILD, ALICE, amount, actor_id=BOB, reason="x")  # type: ignore[arg-type]
    assert "1,000,000,000" in caught.value.user_message
    assert await db.fetchall("SELECT 1 FROM ledger") == []  # not even the starting grant
    assert await db.fetchall("SELECT 1 FROM balances") == []


@pytest.mark.parametrize("delta", [2**63, -(2**63), 10**30, MAX_ENTRY + 1, -MAX_ENTRY - 1, 2.0, "5"])
async def test_adjust_refuses_amounts_out_of_range_before_any_write(db: Database, delta: object) -> None:
    with pytest.raises(AmountOutOfRange, match="1,000,000,000"):
        await db.ledger.adjust(GUILD, ALICE, delta, actor_id=BOB, reason="x")  # type: ignore[arg-type]
    assert await db.fetchall("SELECT 1 FROM ledger") == []


async def test_a_balance_never_passes_its_cap_and_a_huge_amount_never_corrupts_it(db: Database) -> None:
    """The reported bug: set 2^63, then set 1234, showed 1024 (the cache had become a float)."""
    with pytest.raises(AmountOutOfRange):
        await db.ledger.set_balance(GUILD, ALICE, 2**63, actor_id=BOB, reason="x")
    assert (await db.ledger.set_balance(GUILD, ALICE, 1234, actor_id=BOB, reason="x")).available == 1234

    assert (await db.ledger.set_balance(GUILD, ALICE, MAX_BALANCE, actor_id=BOB, reason="x")).available == MAX_BALANCE
    with pytest.raises(AmountOutOfRange, match="at most 1,000,000,000"):
        await db.ledger.adjust(GUILD, ALICE, 1, actor_id=BOB, reason="x")
    assert (await db.ledger.adjust(GUILD, ALICE, -MAX_ENTRY, actor_id=BOB, reason="x")).available == 0
    # Credits held by a running job count toward the cap.
    await db.ledger.set_balance(GUILD, ALICE, 100, actor_id=BOB, reason="x")
    await db.jobs.create_with_hold(request(duration=4))
    with pytest.raises(AmountOutOfRange):
        await db.ledger.set_balance(GUILD, ALICE, MAX_BALANCE, actor_id=BOB, reason="x")
    balance = await db.ledger.set_balance(GUILD, ALICE, MAX_BALANCE - 100, actor_id=BOB, reason="x")
    assert (balance.available, balance.held) == (MAX_BALANCE - 100, 100)
    if db.backend == "sqlite":  # any SQLite column can hold a REAL; PostgreSQL's BIGINT cannot
        rows = await db.fetchall("SELECT typeof(available) AS a, typeof(held) AS h FROM balances")
        assert [(r["a"], r["h"]) for r in rows] == [("integer", "integer")]
    assert await db.ledger.verify() == []


async def test_an_admin_refund_that_would_pass_the_cap_is_refused(db: Database) -> None:
    job = await db.jobs.create_with_hold(request(duration=4))
    await run_to_completed(db, job.id)
    await db.jobs.finish_delivered(job.id, None)
    await db.ledger.set_balance(GUILD, ALICE, MAX_BALANCE, actor_id=BOB, reason="x")
    with pytest.raises(AmountOutOfRange):
        await db.ledger.refund(job.id, actor_id=BOB, reason="x")
    assert "refund" not in await db.ledger.for_job(job.id)
    assert await db.ledger.verify() == []


async def test_settle_and_release_are_idempotent_and_exclusive(db: Database) -> None:
    a = await db.jobs.create_with_hold(request(duration=4))
    assert await settle(db, a.id) is True
    assert await settle(db, a.id) is False
    assert await release(db, a.id, "late") is False
    balance = await db.ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held) == (100, 0)
    with pytest.raises(LookupError):
        await settle(db, "no-such-job")
    assert await db.ledger.verify() == []


async def test_admin_refund_of_a_held_job_releases_it_once(db: Database) -> None:
    job = await db.jobs.create_with_hold(request(duration=8))
    assert await db.ledger.refund(job.id, actor_id=BOB, reason="stuck") is True
    assert await db.ledger.refund(job.id, actor_id=BOB, reason="stuck") is False
    balance = await db.ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held) == (200, 0)
    # The runner later delivers it: delivered, but not charged a second time.
    await run_to_completed(db, job.id)
    assert await db.jobs.finish_delivered(job.id, None) is True
    assert (await db.ledger.balance(GUILD, ALICE)).available == 200
    release = next(e for e in await db.ledger.entries(GUILD, ALICE) if e.kind == "release")
    assert release.actor_id == BOB
    assert await db.ledger.verify() == []


async def test_admin_refund_of_a_charged_job_pays_back_once(db: Database) -> None:
    job = await db.jobs.create_with_hold(request(duration=4))
    await run_to_completed(db, job.id)
    await db.jobs.finish_delivered(job.id, "https://discord.com/channels/1/2/3")
    assert (await db.ledger.balance(GUILD, ALICE)).available == 100
    assert await db.ledger.refund(job.id, actor_id=BOB, reason="bad video") is True
    assert await db.ledger.refund(job.id, actor_id=BOB, reason="bad video") is False
    assert (await db.ledger.balance(GUILD, ALICE)).available == 200
    assert [e.kind for e in await db.ledger.entries(GUILD, ALICE)] == ["refund", "charge", "hold", "grant"]
    assert await db.ledger.verify() == []


async def test_refund_of_a_failed_job_is_refused(db: Database) -> None:
    job = await db.jobs.create_with_hold(request())
    await db.jobs.finish_failed(job.id, "upstream_error", "The provider failed.")
    assert await db.ledger.refund(job.id, actor_id=BOB, reason="double dip") is False
    assert (await db.ledger.balance(GUILD, ALICE)).available == 200


# ---- lazy refill --------------------------------------------------------------------------------------------


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "start", "same_period", "next_period", "next_refill"),
    [
        ("daily", at(2025, 1, 15, 0, 0), at(2025, 1, 15, 23, 59, 59), at(2025, 1, 16, 0, 0), at(2025, 1, 16)),
        # 2025-01-12 is a Sunday; ISO weeks start on Monday 13th.
        ("weekly", at(2025, 1, 13, 0, 0), at(2025, 1, 19, 23, 59), at(2025, 1, 20, 0, 0), at(2025, 1, 20)),
        ("monthly", at(2025, 12, 1, 0, 0), at(2025, 12, 31, 23, 59), at(2026, 1, 1, 0, 0), at(2026, 1, 1)),
    ],
)
async def test_refill_tops_up_once_per_period(
    db: Database, clock: Clock, period: str, start: datetime, same_period: datetime, next_period: datetime,
    next_refill: datetime,
) -> None:
    await db.guilds.update(GUILD, starting_credits=0, refill_amount=300, refill_period=period, cooldown_seconds=0)
    clock.set(start)
    balance = await db.ledger.balance(GUILD, ALICE)
    assert balance.available == 300
    assert balance.next_refill_at == next_refill
    job = await db.jobs.create_with_hold(request(duration=8))  # spend 200
    await run_to_completed(db, job.id)
    await db.jobs.finish_delivered(job.id, None)
    clock.set(same_period)
    assert (await db.ledger.balance(GUILD, ALICE)).available == 100  # no second top-up this period
    clock.set(next_period)
    assert (await db.ledger.balance(GUILD, ALICE)).available == 300  # topped up to, not added
    refills = [e for e in await db.ledger.entries(GUILD, ALICE) if e.kind == "refill"]
    assert [e.delta_available for e in refills] == [200, 300]
    assert await db.ledger.verify() == []


async def test_refill_never_lowers_a_balance_and_still_uses_up_the_period(db: Database, clock: Clock) -> None:
    await db.guilds.update(GUILD, starting_credits=500, refill_amount=300, refill_period="daily", cooldown_seconds=0)
    assert (await db.ledger.balance(GUILD, ALICE)).available == 500
    job = await db.jobs.create_with_hold(request(duration=12))  # 200 left
    await run_to_completed(db, job.id)
    await db.jobs.finish_delivered(job.id, None)
    assert (await db.ledger.balance(GUILD, ALICE)).available == 200  # the period was already considered
    clock.advance(86_400)
    assert (await db.ledger.balance(GUILD, ALICE)).available == 300
    assert await db.ledger.verify() == []


async def test_refill_happens_when_spending_too(db: Database, clock: Clock) -> None:
    await db.guilds.update(GUILD, starting_credits=0, refill_amount=100, refill_period="daily", cooldown_seconds=0)
    first = await db.jobs.create_with_hold(request(duration=4))  # the first refill pays for it
    await run_to_completed(db, first.id)
    await db.jobs.finish_delivered(first.id, None)
    clock.advance(86_400)
    await db.jobs.create_with_hold(request(duration=4))
    balance = await db.ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held) == (0, 100)


@pytest.mark.parametrize("outcome", ["released", "charged"])
async def test_refill_counts_credits_held_at_the_refill_moment(db: Database, clock: Clock, outcome: str) -> None:
    """300 daily, a job holding 100 across midnight: the member has 300 in all afterwards (not 600)."""
    await db.guilds.update(GUILD, starting_credits=0, refill_amount=300, refill_period="daily", cooldown_seconds=0)
    job = await db.jobs.create_with_hold(request(duration=4))  # today's refill: 300, then 100 held
    clock.advance(86_400)  # the next period begins while the job still holds its 100
    balance = await db.ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held) == (200, 100)  # available + held is already 300: no top-up
    if outcome == "released":
        await db.jobs.finish_failed(job.id, "upstream_error", "failed")
        expected = 300
    else:
        await run_to_completed(db, job.id)
        await db.jobs.finish_delivered(job.id, None)
        expected = 200
    balance = await db.ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held) == (expected, 0)
    refills = [e.delta_available for e in await db.ledger.entries(GUILD, ALICE) if e.kind == "refill"]
    assert refills == [300]
    clock.advance(86_400)  # the period after: topped up to 300 again, counting nothing held
    assert (await db.ledger.balance(GUILD, ALICE)).available == 300
    assert await db.ledger.verify() == []


async def test_refill_tops_up_what_held_credits_leave_short(db: Database, clock: Clock) -> None:
    await db.guilds.update(GUILD, starting_credits=0, refill_amount=300, refill_period="daily", cooldown_seconds=0)
    await db.jobs.create_with_hold(request(duration=4))  # 200 available, 100 held
    await db.ledger.adjust(GUILD, ALICE, -150, actor_id=BOB, reason="x")  # 50 available, 100 held
    clock.advance(86_400)
    balance = await db.ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held) == (200, 100)  # topped up by 150: 300 in all
    assert await db.ledger.verify() == []


async def test_no_refill_means_no_next_refill(db: Database) -> None:
    await db.guilds.update(GUILD, refill_period="daily")  # amount 0: nothing to top up
    assert (await db.ledger.balance(GUILD, ALICE)).next_refill_at is None
