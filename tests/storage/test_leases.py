"""Jobs owned by the database (storage.leases), on both backends: claims, fencing, expiry and takeover, fair
shares, and slot grants that count the limits and keep FIFO across processes (several pools on one database)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.conn import Presence
from storage.db import Database
from storage.errors import LeaseLost
from storage.leases import DRIVING, Lease

from .conftest import ALICE, BOB, GUILD, OTHER_GUILD, Clock, request

LEASE = 30.0
NO_LIMITS = {"max_jobs_per_member": 50, "cooldown_seconds": 0, "max_jobs_per_guild": 100,
             "starting_credits": 100_000}


class Process:
    """One process's view: its own pool, its owner name, its presence (a named session on PostgreSQL)."""

    def __init__(self, db: Database, owner: str, presence: Presence) -> None:
        self.db, self.owner, self.presence = db, owner, presence

    async def claim(self, limit: int = 100, job_id: str | None = None) -> list[str]:
        return [c.job.id for c in await self.db.leases.claim(self.owner, LEASE, limit, job_id=job_id)]


@contextlib.asynccontextmanager
async def processes(target: str | Path, clock: Clock, count: int) -> AsyncIterator[list[Process]]:
    made: list[Process] = []
    try:
        for number in range(count):
            db = await Database.open(target, clock=clock)
            owner = f"test-proc-{number}#{id(db) % 10_000:04d}"
            await db.leases.register(owner)
            made.append(Process(db, owner, await db.open_presence(owner, lambda _payload: None)))
        yield made
    finally:
        for proc in made:
            await proc.presence.close()
            with contextlib.suppress(Exception):
                await proc.db.leases.unregister(proc.owner)
            await proc.db.close()


async def _jobs(db: Database, count: int, *, guild_id: int = GUILD, users: tuple[int, ...] = (ALICE,)) -> list[str]:
    for guild in {guild_id, GUILD}:
        await db.guilds.update(guild, **NO_LIMITS)
    ids = []
    for n in range(count):
        ids.append((await db.jobs.create_with_hold(request(users[n % len(users)], guild_id=guild_id))).id)
    return ids


async def test_concurrent_claims_from_several_pools_never_hand_a_job_to_two_owners(db_target: str | Path,
                                                                                     clock: Clock) -> None:
    async with processes(db_target, clock, 4) as procs:
        ids = await _jobs(procs[0].db, 60, users=(ALICE, BOB))

        async def claim_all(proc: Process) -> list[str]:
            got: list[str] = []
            for _ in range(200):  # bounded: 60 jobs, one claimed per round while any is left
                batch = await proc.claim(limit=1)
                if not batch and not await proc.db.leases.claimable():
                    return got
                got += batch
            return got

        async with asyncio.timeout(60):
            results = await asyncio.gather(*(claim_all(p) for p in procs))
        claimed = [job_id for got in results for job_id in got]
        assert sorted(claimed) == sorted(ids)  # every job once, none twice
        if isinstance(db_target, str):  # PostgreSQL: the claimers really overlapped (SQLite writers take turns,
            assert sum(1 for got in results if got) >= 2  # and one may well win every turn)
        rows = await procs[0].db.fetchall("SELECT id, owner, fence FROM jobs")
        owner_of = {job_id: procs[i].owner for i, got in enumerate(results) for job_id in got}
        assert {(r["id"], r["owner"], r["fence"]) for r in rows} == {(j, owner_of[j], 1) for j in ids}


async def test_a_stale_fence_can_neither_mark_settle_touch_nor_record_a_post(db_target: str | Path,
                                                                               clock: Clock) -> None:
    async with processes(db_target, clock, 2) as (a, b):
        [job_id] = await _jobs(a.db, 1)
        [claimed] = await a.db.leases.claim(a.owner, LEASE, 1)
        stale = claimed.lease
        assert await b.claim() == []  # a live lease is nobody else's
        clock.advance(LEASE + 1)  # `a` paused past its lease
        [taken] = await b.db.leases.claim(b.owner, LEASE, 1)
        assert (taken.previous_owner, taken.job.fence) == (a.owner, 2)

        with pytest.raises(LeaseLost):
            await a.db.jobs.mark_submitting(job_id, lease=stale)
        with pytest.raises(LeaseLost):
            await a.db.jobs.finish_failed(job_id, "internal", "x", lease=stale)
        with pytest.raises(LeaseLost):
            await a.db.leases.touch(stale, LEASE)  # the check before a post
        token = DRIVING.set((job_id, {job_id: stale}))  # the notifier writes inside the stale task
        try:
            with pytest.raises(LeaseLost):
                await a.db.jobs.set_status_message(job_id, 1, 2)
        finally:
            DRIVING.reset(token)
        assert await a.db.leases.renew(a.owner, LEASE, {job_id: stale.fence}) == set()
        job = await b.db.jobs.get(job_id)
        assert job is not None and (job.state, job.attempts, job.status_message_id) == ("queued", 0, None)
        assert sorted(await b.db.ledger.for_job(job_id)) == ["hold"]  # nothing settled by the stale process

        fresh = taken.lease  # the holder writes as usual
        await b.db.leases.touch(fresh, LEASE)
        moved = await b.db.jobs.mark_submitting(job_id, lease=fresh)
        assert moved.attempts == 1
        assert await b.db.jobs.finish_failed(job_id, "internal", "x", lease=fresh)
        assert await b.db.ledger.verify() == []


async def test_an_expired_lease_nobody_claimed_is_still_its_holders(db_target: str | Path, clock: Clock) -> None:
    """The fence decides, not the clock: a late renewal keeps the job when no claim moved the fence."""
    async with processes(db_target, clock, 1) as (a,):
        [job_id] = await _jobs(a.db, 1)
        [claimed] = await a.db.leases.claim(a.owner, LEASE, 1)
        clock.advance(LEASE * 3)
        assert await a.db.leases.renew(a.owner, LEASE, {job_id: claimed.lease.fence}) == {job_id}
        await a.db.jobs.mark_submitting(job_id, lease=claimed.lease)


async def test_a_lease_given_back_is_free_at_once(db_target: str | Path, clock: Clock) -> None:
    async with processes(db_target, clock, 2) as (a, b):
        await _jobs(a.db, 3)
        assert len(await a.claim()) == 3
        assert await a.db.leases.unregister(a.owner) == 3  # a clean stop gives every lease back
        assert len(await b.claim()) == 3


async def test_a_dead_processs_leases_are_free_without_waiting_for_expiry(db_target: str | Path,
                                                                            clock: Clock) -> None:
    """What a killed run leaves: its row in `processes` and a live-looking lease. PostgreSQL: it holds no
    session any more (kill -9 closed it). SQLite: the guard lets one process drive a file, so the next run's
    registration removes the earlier run's row. Either way the job is free at once, no clock advance."""
    async with processes(db_target, clock, 1) as (b,):
        [job_id] = await _jobs(b.db, 1)
        async with b.db.write() as conn:
            await conn.execute("INSERT INTO processes (name, started_at, heartbeat_at) VALUES ('dead-run#1', ?, ?)",
                               (clock(), clock()))
            await conn.execute("UPDATE jobs SET owner = 'dead-run#1', lease_expires_at = ?, fence = 1",
                               (clock() + LEASE,))
        await b.db.leases.register(b.owner)  # the next run starts (on PostgreSQL: no-op for the other row)
        assert await b.claim() == [job_id]
        job = await b.db.jobs.get(job_id)
        assert job is not None and (job.owner, job.fence) == (b.owner, 2)


async def test_fair_share_counts_live_processes_and_unfinished_jobs(db_target: str | Path, clock: Clock) -> None:
    async with processes(db_target, clock, 3) as procs:
        await _jobs(procs[0].db, 10)
        for proc in procs:
            await proc.db.leases.heartbeat(proc.owner)
        census = await procs[0].db.leases.census(LEASE)
        assert (census.live_processes, census.unfinished, census.share) == (3, 10, 4)
        clock.advance(LEASE + 1)  # two of them stopped beating
        await procs[0].db.leases.heartbeat(procs[0].owner)
        assert (await procs[0].db.leases.census(LEASE)).share == 10


def _waiting(claimed: list[str], fences: dict[str, int] | None = None) -> dict[str, int]:
    return {job_id: (fences or {}).get(job_id, 1) for job_id in claimed}


async def test_slots_go_oldest_first_up_to_the_bot_wide_limit(db_target: str | Path, clock: Clock) -> None:
    async with processes(db_target, clock, 1) as (a,):
        ids = await _jobs(a.db, 4)
        mine = _waiting(await a.claim())
        grants = await a.db.leases.start_queued(a.owner, 2, mine)
        assert grants.started == ids[:2] and grants.queue == ids[2:]
        assert [j.state for j in [await a.db.jobs.get(i) for i in ids] if j] == ["submitting"] * 2 + ["queued"] * 2
        assert (await a.db.leases.start_queued(a.owner, 2, _waiting(ids[2:]))).started == []  # full
        assert await a.db.jobs.finish_failed(ids[0], "x", "x", lease=Lease(ids[0], a.owner, 1))
        assert (await a.db.leases.start_queued(a.owner, 2, _waiting(ids[2:]))).started == [ids[2]]


async def test_a_full_server_does_not_hold_back_another_but_keeps_its_own_order(db_target: str | Path,
                                                                               clock: Clock) -> None:
    async with processes(db_target, clock, 1) as (a,):
        busy = await _jobs(a.db, 3, guild_id=OTHER_GUILD)
        other = await _jobs(a.db, 1)
        await a.db.guilds.update(OTHER_GUILD, max_jobs_per_guild=1)  # one of its jobs runs, two wait
        mine = _waiting(await a.claim())
        grants = await a.db.leases.start_queued(a.owner, 10, mine)
        assert grants.started == [busy[0], other[0]]  # the full server's later jobs do not block GUILD's job
        assert grants.queue == busy[1:]  # and keep their own order


async def test_a_slot_is_kept_for_an_older_job_of_another_process(db_target: str | Path, clock: Clock) -> None:
    """FIFO across processes: one free slot; the oldest runnable job is b's, so a's newer job waits for it."""
    async with processes(db_target, clock, 2) as (a, b):
        older, newer = await _jobs(a.db, 2)
        assert await b.claim(job_id=older) == [older]
        assert await a.claim(job_id=newer) == [newer]
        assert (await a.db.leases.start_queued(a.owner, 1, _waiting([newer]))).started == []
        grants = await b.db.leases.start_queued(b.owner, 1, _waiting([older]))
        assert grants.started == [older] and grants.queue == [newer]


async def test_slot_grants_from_two_processes_at_once_never_exceed_the_limit(db_target: str | Path,
                                                                            clock: Clock) -> None:
    async with processes(db_target, clock, 2) as (a, b):
        ids = await _jobs(a.db, 8, users=(ALICE, BOB))
        for index, job_id in enumerate(ids):
            assert await (a if index % 2 else b).claim(job_id=job_id) == [job_id]
        waiting_a = _waiting(ids[1::2])
        waiting_b = _waiting(ids[0::2])
        started: list[str] = []
        async with asyncio.timeout(30):
            for _ in range(5):  # passes from both at once, again and again
                ga, gb = await asyncio.gather(a.db.leases.start_queued(a.owner, 3, waiting_a),
                                              b.db.leases.start_queued(b.owner, 3, waiting_b))
                started += ga.started + gb.started
                for job_id in ga.started:
                    waiting_a.pop(job_id)
                for job_id in gb.started:
                    waiting_b.pop(job_id)
        assert sorted(started) == sorted(ids[:3])  # the three oldest, each once, never a fourth
        assert await a.db.jobs.running_count() == 3
