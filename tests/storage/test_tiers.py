"""Role tiers in storage (issue 15, item 1), on both backends: the most generous of a member's tiers per aspect,
the server's settings elsewhere, a refused duration before any hold, refills that follow the tier even where
no interaction is at hand, and a database that cannot hold a tier allowing no duration."""

from __future__ import annotations

import dataclasses

import pytest

from storage.db import Database
from storage.errors import DurationNotAllowed, StorageError, TooManyJobs
from storage.tiers import Tier, parse_durations

from .conftest import ALICE, BOB, GUILD, request

TRIAL, SUPPORTER, PATRON = 901, 902, 903
ADMIN = 77


async def test_the_most_generous_of_each_aspect_and_the_server_elsewhere(db: Database) -> None:
    await db.guilds.update(GUILD, refill_amount=200, refill_period="daily", max_jobs_per_member=2)
    await db.tiers.set(GUILD, Tier(TRIAL, durations=(4,), max_jobs_per_member=1), ADMIN)
    await db.tiers.set(GUILD, Tier(SUPPORTER, refill_amount=500, durations=(4, 8)), ADMIN)
    await db.tiers.set(GUILD, Tier(PATRON, max_jobs_per_member=5), ADMIN)

    none = await db.tiers.for_member(GUILD, ALICE, [GUILD])  # @everyone only
    assert (none.refill_amount, none.max_jobs_per_member, none.durations, none.tiers) == (200, 2, (4, 8, 12), ())
    trial = await db.tiers.for_member(GUILD, ALICE, [TRIAL])
    assert (trial.refill_amount, trial.max_jobs_per_member, trial.durations) == (200, 1, (4,))
    both = await db.tiers.for_member(GUILD, ALICE, [TRIAL, SUPPORTER, PATRON])
    assert (both.refill_amount, both.max_jobs_per_member, both.durations) == (500, 5, (4, 8))
    assert [t.role_id for t in both.tiers] == [TRIAL, SUPPORTER, PATRON]


async def test_a_refused_duration_or_limit_writes_nothing(db: Database) -> None:
    await db.tiers.set(GUILD, Tier(TRIAL, durations=(4,), max_jobs_per_member=1), ADMIN)
    trial = dataclasses.replace(request(duration=8), role_ids=(TRIAL,))
    with pytest.raises(DurationNotAllowed) as refused:
        await db.jobs.precheck(trial)
    assert refused.value.allowed == (4,) and "4 s" in refused.value.user_message
    with pytest.raises(DurationNotAllowed):
        await db.jobs.create_with_hold(trial)
    assert await db.fetchall("SELECT id FROM ledger WHERE kind = 'hold'") == []
    await db.jobs.create_with_hold(dataclasses.replace(trial, duration=4, cost=100))
    with pytest.raises(TooManyJobs):  # the tier's one at once
        await db.jobs.create_with_hold(dataclasses.replace(trial, duration=4, cost=100))
    await db.jobs.create_with_hold(request(duration=8, user_id=BOB))  # no tier: the server's settings
    assert await db.ledger.verify() == []


async def test_refills_follow_the_tier_with_the_roles_last_seen(db: Database) -> None:
    await db.guilds.update(GUILD, refill_amount=200, refill_period="daily", starting_credits=0)
    await db.tiers.set(GUILD, Tier(SUPPORTER, refill_amount=500), ADMIN)
    job = await db.jobs.create_with_hold(dataclasses.replace(request(), role_ids=(SUPPORTER,)))  # remembered
    assert (await db.ledger.balance(GUILD, ALICE)).available == 400  # 500 - 100 held; no roles at hand here
    assert (await db.ledger.balance(GUILD, BOB, [GUILD])).available == 200
    assert await db.ledger.verify() == [] and job.cost == 100


async def test_no_tier_may_allow_no_duration(db: Database) -> None:
    for text in ("", " , ", "0", "7", "4,x"):
        with pytest.raises(ValueError, match=r"duration|video length"):
            parse_durations(text)
    assert parse_durations("12, 4,4") == (4, 12)
    with pytest.raises(ValueError, match="at least one duration"):
        await db.tiers.set(GUILD, Tier(TRIAL, durations=()), ADMIN)
    with pytest.raises(ValueError, match="at least one of"):
        await db.tiers.set(GUILD, Tier(TRIAL), ADMIN)  # nothing set at all
    with pytest.raises(StorageError):  # the database refuses it too
        async with db.write() as conn:
            await conn.execute("INSERT INTO role_tiers (guild_id, role_id, durations, updated_at) VALUES (?, ?, '', 0)",
                               (GUILD, TRIAL))
    assert await db.tiers.all(GUILD) == []


async def test_changes_are_audited_and_erased_with_the_server(db: Database) -> None:
    await db.tiers.set(GUILD, Tier(TRIAL, durations=(4,)), ADMIN)
    assert await db.tiers.remove(GUILD, TRIAL, None, "role deleted") is True
    assert await db.tiers.remove(GUILD, TRIAL, ADMIN) is False
    audit = await db.tiers.audit(GUILD)
    assert [(r, a, act) for r, a, act, _, _ in audit] == [(TRIAL, None, "remove"), (TRIAL, ADMIN, "set")]
    await db.tiers.set(GUILD, Tier(SUPPORTER, refill_amount=5), ADMIN)
    erased = await db.reports.erase(GUILD, None)
    assert erased.counts["role_tiers"] == 1 and erased.counts["tier_audit"] == 3
    assert await db.tiers.all(GUILD) == [] and await db.tiers.audit(GUILD) == []
