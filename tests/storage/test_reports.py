"""Admin reports and erasure; one server's data never shows in another's."""

from __future__ import annotations

from datetime import date

import pytest

from storage.db import Database
from storage.errors import Blocked

from .conftest import ALICE, BOB, GUILD, OTHER_GUILD, Clock, request, run_to_completed


async def _deliver(db: Database, user: int, duration: int, guild_id: int = GUILD) -> str:
    job = await db.jobs.create_with_hold(request(user, duration=duration, guild_id=guild_id))
    await run_to_completed(db, job.id)
    await db.jobs.finish_delivered(job.id, None)
    return job.id


async def test_guild_usage(db: Database, clock: Clock) -> None:
    for guild in (GUILD, OTHER_GUILD):
        await db.guilds.update(guild, cooldown_seconds=0, starting_credits=1_000)
    await _deliver(db, ALICE, 12)  # day 1: 300 charged
    clock.advance(86_400)
    refunded = await _deliver(db, BOB, 4)  # day 2: 100 charged, then refunded by an admin
    await db.ledger.refund(refunded, actor_id=ALICE, reason="bad")
    failed = await db.jobs.create_with_hold(request(BOB, duration=8))
    await db.jobs.finish_failed(failed.id, "upstream_error", "failed")  # 200 released
    await db.jobs.create_with_hold(request(ALICE, duration=4))  # still queued
    await _deliver(db, ALICE, 12, guild_id=OTHER_GUILD)  # another server: must not count

    usage = await db.reports.guild_usage(GUILD, days=7)
    assert usage.jobs_by_state == {"delivered": 2, "failed": 1, "queued": 1}
    assert usage.jobs_total == 4
    assert (usage.credits_charged, usage.credits_refunded, usage.credits_released) == (400, 100, 200)
    assert usage.dollars == 2.0
    assert [(m.user_id, m.jobs, m.credits_charged) for m in usage.top_members] == [(ALICE, 1, 300), (BOB, 1, 100)]
    assert len(usage.daily) == 7
    assert usage.daily[-1].day == date(2025, 1, 16)
    assert [(d.jobs, d.credits_charged, d.credits_returned) for d in usage.daily[-2:]] == [(1, 300, 0),
                                                                                           (3, 100, 300)]
    today_only = await db.reports.guild_usage(GUILD, days=1)
    assert today_only.credits_charged == 100
    assert len(today_only.daily) == 1


async def test_member_summary(db: Database) -> None:
    await db.guilds.block(GUILD, BOB, "rude", actor_id=ALICE)
    with pytest.raises(Blocked):
        await db.jobs.create_with_hold(request(BOB))
    await db.ledger.adjust(GUILD, BOB, 50, actor_id=ALICE, reason="gift")
    summary = await db.reports.member_summary(GUILD, BOB)
    assert summary.balance.available == 250
    assert summary.blocked_reason == "rude"
    assert [e.kind for e in summary.entries] == ["adjust", "grant"]
    assert summary.jobs == []


async def test_delete_member_removes_only_that_member(db: Database) -> None:
    await db.guilds.update(GUILD, cooldown_seconds=0)
    await _deliver(db, ALICE, 4)
    await db.jobs.create_with_hold(request(ALICE, duration=4))
    await _deliver(db, BOB, 4)
    await _deliver(db, ALICE, 4, guild_id=OTHER_GUILD)
    await db.guilds.block(GUILD, ALICE, "x", actor_id=BOB)
    counts = (await db.reports.erase(GUILD, ALICE)).counts
    assert counts == {"ledger": 4, "jobs": 2, "balances": 1, "refill_periods": 0, "blocked_members": 1,
                      "member_roles": 0}
    assert await db.ledger.entries(GUILD, ALICE) == []
    assert await db.jobs.recent_for_user(GUILD, ALICE) == []
    assert len(await db.ledger.entries(GUILD, BOB)) == 3
    assert len(await db.ledger.entries(OTHER_GUILD, ALICE)) == 3
    assert await db.ledger.verify() == []
    # The ledger is append-only again after the erasure.
    assert (await db.reports.erase(GUILD, ALICE)).counts == {
        "ledger": 0, "jobs": 0, "balances": 0, "refill_periods": 0, "blocked_members": 0, "member_roles": 0}
    # A member whose data was erased is new to the bot again.
    assert (await db.ledger.balance(GUILD, ALICE)).available == 200


async def test_delete_guild(db: Database) -> None:
    await db.guilds.update(GUILD, cooldown_seconds=0, refill_amount=10, refill_period="daily")
    await _deliver(db, ALICE, 4)
    await _deliver(db, BOB, 4)
    await _deliver(db, ALICE, 4, guild_id=OTHER_GUILD)
    counts = (await db.reports.erase(GUILD, None)).counts
    assert counts["ledger"] == 6 and counts["jobs"] == 2 and counts["guild_settings"] == 1
    assert counts["refill_periods"] == 2
    assert (await db.guilds.get(GUILD)).refill_amount == 0
    assert (await db.reports.guild_usage(GUILD, 30)).jobs_total == 0
    assert (await db.reports.guild_usage(OTHER_GUILD, 30)).jobs_total == 1
    assert await db.ledger.verify() == []
