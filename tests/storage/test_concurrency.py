"""Real concurrent tasks, pools and processes on one real database (both backends): no overspend, no double
refill, quotas that hold across connections."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from datetime import UTC, datetime
from pathlib import Path

from storage.db import Database
from storage.errors import NotEnoughCredits, QuotaRefused
from tests.storage.ledger_ops import release, settle

from .conftest import ALICE, BOB, GUILD, Clock, request

ROOT = Path(__file__).resolve().parents[2]
NO_LIMITS = {"max_jobs_per_member": 50, "cooldown_seconds": 0, "max_jobs_per_guild": 100}


async def test_fifty_concurrent_requests_from_a_member_who_can_afford_seven(db: Database) -> None:
    await db.guilds.update(GUILD, starting_credits=700, **NO_LIMITS)
    async with asyncio.timeout(30):
        results = await asyncio.gather(*(db.jobs.create_with_hold(request(ALICE)) for _ in range(50)),
                                       return_exceptions=True)
    accepted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, NotEnoughCredits)]
    assert len(accepted) == 7
    assert len(refused) == 43
    holds = [e for e in await db.ledger.entries(GUILD, ALICE, limit=100) if e.kind == "hold"]
    assert len(holds) == 7
    balance = await db.ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held) == (0, 700)
    assert await db.ledger.verify() == []


async def _pools(target: str | Path, count: int, clock: Clock) -> list[Database]:
    return [await Database.open(target, clock=clock) for _ in range(count)]


async def test_fifty_requests_through_five_separate_pools_hold_exactly_seven(db_target: str | Path,
                                                                             clock: Clock) -> None:
    """Five Database objects (five pools, or five SQLite writers) meet at the database's own locks."""
    dbs = await _pools(db_target, 5, clock)
    try:
        await dbs[0].guilds.update(GUILD, starting_credits=700, **NO_LIMITS)
        async with asyncio.timeout(60):
            results = await asyncio.gather(
                *(db.jobs.create_with_hold(request(ALICE)) for db in dbs for _ in range(10)), return_exceptions=True
            )
        assert [type(r).__name__ for r in results if isinstance(r, BaseException)].count("NotEnoughCredits") == 43
        assert sum(1 for r in results if not isinstance(r, BaseException)) == 7
        assert [e.kind for e in await dbs[0].ledger.entries(GUILD, ALICE, limit=100)].count("hold") == 7
        assert await dbs[0].ledger.verify() == []
    finally:
        for db in dbs:
            await db.close()


async def test_fifty_requests_from_three_processes_hold_exactly_seven(db_target: str | Path, tmp_path: Path) -> None:
    """Three OS processes, each with its own connections, released at the same moment."""
    setup = await Database.open(db_target)
    try:
        await setup.guilds.update(GUILD, starting_credits=700, **NO_LIMITS)
    finally:
        await setup.close()
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.storage.admission_worker", str(db_target), str(n), str(ALICE), str(go),
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for n in (17, 17, 16)
    ]
    await asyncio.sleep(1.0)  # give every process time to open its connections before the start signal
    go.touch()
    async with asyncio.timeout(90):
        outputs = [await proc.communicate() for proc in procs]
    reports = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()[-2000:]
        reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    assert [r["errors"] for r in reports] == [[], [], []]
    assert sum(r["accepted"] for r in reports) == 7
    assert sum(r["refused"].get("NotEnoughCredits", 0) for r in reports) == 43
    db = await Database.open(db_target)
    try:
        assert [e.kind for e in await db.ledger.entries(GUILD, ALICE, limit=100)].count("hold") == 7
        balance = await db.ledger.balance(GUILD, ALICE)
        assert (balance.available, balance.held) == (0, 700)
        assert await db.ledger.verify() == []
    finally:
        await db.close()


async def test_quotas_spanning_members_hold_across_pools(db_target: str | Path, clock: Clock) -> None:
    """Daily budget (whole server), cooldown and jobs-at-once (per member), raced from three pools."""
    dbs = await _pools(db_target, 3, clock)
    try:
        # Daily budget 700 = 7 jobs of 100 for the whole server, asked for by 10 members at once.
        await dbs[0].guilds.update(GUILD, starting_credits=1_000, daily_budget=700, **NO_LIMITS)
        members = range(300, 310)
        async with asyncio.timeout(60):
            results = await asyncio.gather(
                *(db.jobs.create_with_hold(request(user)) for db in dbs for user in members for _ in range(2)),
                return_exceptions=True,
            )
        assert sum(1 for r in results if not isinstance(r, BaseException)) == 7
        assert {type(r).__name__ for r in results if isinstance(r, BaseException)} == {"DailyBudgetExhausted"}

        # Cooldown: of 30 requests from one member, one gets through.
        await dbs[0].guilds.update(GUILD, daily_budget=0, cooldown_seconds=60)
        async with asyncio.timeout(60):
            results = await asyncio.gather(
                *(db.jobs.create_with_hold(request(BOB)) for db in dbs for _ in range(10)), return_exceptions=True
            )
        assert sum(1 for r in results if not isinstance(r, BaseException)) == 1
        assert {type(r).__name__ for r in results if isinstance(r, BaseException)} == {"Cooldown"}

        # Jobs at once: two per member, plenty of credits.
        await dbs[0].guilds.update(GUILD, cooldown_seconds=0, max_jobs_per_member=2)
        async with asyncio.timeout(60):
            results = await asyncio.gather(
                *(db.jobs.create_with_hold(request(ALICE)) for db in dbs for _ in range(10)), return_exceptions=True
            )
        assert sum(1 for r in results if not isinstance(r, BaseException)) == 2
        assert {type(r).__name__ for r in results if isinstance(r, BaseException)} == {"TooManyJobs"}
        assert await dbs[0].ledger.verify() == []
    finally:
        for db in dbs:
            await db.close()


async def test_a_thousand_concurrent_hold_settle_pairs_never_overspend(db: Database) -> None:
    members = list(range(100, 120))  # 20 members, each able to afford 30 of the 50 jobs they try
    budget = 3_000
    await db.guilds.update(GUILD, starting_credits=budget, **NO_LIMITS)
    rng = random.Random(1)

    async def pair(user_id: int, fate: str) -> str:
        try:
            job = await db.jobs.create_with_hold(request(user_id))
        except QuotaRefused as refusal:
            return type(refusal).__name__
        await asyncio.sleep(0)  # let other tasks interleave between hold and settlement
        if fate == "charge":
            assert await settle(db, job.id) is True
        else:
            assert await release(db, job.id, "failed") is True
        return fate

    fates = [(user, rng.choice(["charge", "charge", "charge", "release"])) for user in members for _ in range(50)]
    rng.shuffle(fates)
    assert len(fates) == 1_000
    async with asyncio.timeout(90):
        outcomes = await asyncio.gather(*(pair(u, f) for u, f in fates))
    assert set(outcomes) <= {"charge", "release", "NotEnoughCredits", "TooManyJobs"}
    for user in members:
        balance = await db.ledger.balance(GUILD, user)
        entries = await db.ledger.entries(GUILD, user, limit=1_000)
        charged = sum(-e.delta_held for e in entries if e.kind == "charge")
        assert balance.held == 0
        assert balance.available >= 0
        assert balance.available + charged == budget  # nothing lost, nothing spent twice
        holds = sum(1 for e in entries if e.kind == "hold")
        settlements = sum(1 for e in entries if e.kind in ("charge", "release"))
        assert holds == settlements
        assert charged <= budget
    assert outcomes.count("NotEnoughCredits") > 0  # the members really were pushed past what they had
    assert await db.ledger.verify() == []


async def test_concurrent_reads_at_a_period_boundary_refill_exactly_once(db: Database, clock: Clock) -> None:
    await db.guilds.update(GUILD, starting_credits=0, refill_amount=200, refill_period="daily")
    clock.set(datetime(2025, 3, 1, 23, 59, 59, tzinfo=UTC))
    await db.ledger.balance(GUILD, ALICE)
    await db.ledger.set_balance(GUILD, ALICE, 0, actor_id=None, reason="spent")
    clock.set(datetime(2025, 3, 2, 0, 0, 0, tzinfo=UTC))
    async with asyncio.timeout(30):
        balances = await asyncio.gather(*(db.ledger.balance(GUILD, ALICE) for _ in range(50)))
    assert {b.available for b in balances} == {200}
    refills = [e for e in await db.ledger.entries(GUILD, ALICE, limit=100) if e.kind == "refill"]
    assert len(refills) == 2  # one per day
    assert await db.ledger.verify() == []


async def test_two_database_objects_on_one_database_refill_exactly_once(db_target: str | Path, clock: Clock) -> None:
    """Two processes (here: two writer connections or pools) meet at the database's locks, not our asyncio.Lock."""
    first = await Database.open(db_target, clock=clock)
    second = await Database.open(db_target, clock=clock)
    try:
        await first.guilds.update(GUILD, starting_credits=0, refill_amount=100, refill_period="weekly",
                                  cooldown_seconds=0, max_jobs_per_member=50)
        async with asyncio.timeout(60):
            results = await asyncio.gather(
                *(db.ledger.balance(GUILD, ALICE) for db in (first, second) for _ in range(20)),
                *(db.jobs.create_with_hold(request(ALICE)) for db in (first, second) for _ in range(5)),
                return_exceptions=True,
            )
        assert not [r for r in results if isinstance(r, BaseException) and not isinstance(r, NotEnoughCredits)]
        entries = await first.ledger.entries(GUILD, ALICE, limit=100)
        assert [e.kind for e in entries].count("refill") == 1
        assert [e.kind for e in entries].count("hold") == 1
        assert await first.ledger.verify() == []
    finally:
        await first.close()
        await second.close()


async def test_reads_are_not_blocked_by_a_long_write(db: Database) -> None:
    await db.ledger.balance(GUILD, ALICE)
    async with db.write() as conn:
        await conn.execute("INSERT INTO refill_periods VALUES (1, 1, 'x', 0)")
        # The writer holds its transaction open; the reader still answers with committed data.
        async with asyncio.timeout(2):
            assert (await db.ledger.balance(GUILD, ALICE)).available == 200


async def test_cancelled_writers_leave_nothing_half_written(db: Database) -> None:
    await db.guilds.update(GUILD, starting_credits=10_000, **NO_LIMITS)
    rng = random.Random(3)
    for _ in range(20):
        tasks = [asyncio.create_task(db.jobs.create_with_hold(request(ALICE))) for _ in range(10)]
        await asyncio.sleep(rng.uniform(0, 0.005))
        for task in tasks:
            task.cancel()
        async with asyncio.timeout(10):
            await asyncio.gather(*tasks, return_exceptions=True)
        for job in await db.jobs.active_for_guild(GUILD):
            await db.jobs.finish_failed(job.id, "cancelled", "test")
    assert await db.ledger.verify() == []
    balance = await db.ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held) == (10_000, 0)
    assert (await db.jobs.create_with_hold(request(ALICE))).state == "queued"  # the writer still works
