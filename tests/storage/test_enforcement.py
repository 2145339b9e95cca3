"""The database itself refuses what would lose money, even when raw SQL bypasses the code (both backends).

The raw connections here are the drivers' own (sqlite3, asyncpg), not storage's, and their own errors are
what the tests expect; only the `?` placeholders are translated for PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from storage.conn import translate_placeholders
from storage.db import Database

from .conftest import ALICE, BOB, GUILD, request, run_to_completed

REFUSED = (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError)
UNIQUE = r"UNIQUE|unique constraint"
CHECK = r"(?i)check constraint"


class Raw:
    """Autocommit SQL straight through the driver, with BEGIN/ROLLBACK when a test needs a transaction."""

    def __init__(self, sqlite: sqlite3.Connection | None = None, pg: asyncpg.Connection | None = None) -> None:
        self.sqlite = sqlite
        self.pg = pg

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        if self.pg is not None:
            await self.pg.execute(translate_placeholders(sql), *params)
        else:
            assert self.sqlite is not None
            self.sqlite.execute(sql, params)


@asynccontextmanager
async def raw(db: Database) -> AsyncIterator[Raw]:
    if db.url is not None:
        conn = await asyncpg.connect(db.url)
        try:
            yield Raw(pg=conn)
        finally:
            await conn.close()
        return
    assert isinstance(db.path, Path)
    lite = sqlite3.connect(db.path, isolation_level=None)
    lite.execute("PRAGMA foreign_keys = ON")
    try:
        yield Raw(sqlite=lite)
    finally:
        lite.close()


async def entry(conn: Raw, kind: str, da: int, dh: int, job_id: str | None = None) -> None:
    await conn.execute(
        "INSERT INTO ledger (guild_id, user_id, kind, delta_available, delta_held, job_id, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, 0)",
        (GUILD, ALICE, kind, da, dh, job_id),
    )


async def test_double_settlement_by_raw_sql_is_refused(db: Database) -> None:
    job = await db.jobs.create_with_hold(request())
    await run_to_completed(db, job.id)
    await db.jobs.finish_delivered(job.id, None)
    async with raw(db) as conn:
        for kind, da, dh in (("charge", 0, -100), ("release", 100, -100)):
            with pytest.raises(REFUSED, match=UNIQUE):
                await entry(conn, kind, da, dh, job.id)
        with pytest.raises(REFUSED, match=UNIQUE):
            await entry(conn, "hold", -100, 100, job.id)
        await entry(conn, "refund", 100, 0, job.id)
        with pytest.raises(REFUSED, match=UNIQUE):
            await entry(conn, "refund", 100, 0, job.id)
    assert await db.ledger.settle(job.id) is False
    assert await db.ledger.verify() == []


async def test_settlement_must_match_its_hold(db: Database) -> None:
    job = await db.jobs.create_with_hold(request())
    async with raw(db) as conn:
        with pytest.raises(REFUSED, match="matching hold"):
            await entry(conn, "release", 300, -300, job.id)  # more than was held
        with pytest.raises(REFUSED, match="matching charge"):
            await entry(conn, "refund", 100, 0, job.id)  # refund before any charge
        with pytest.raises(REFUSED, match=CHECK):
            await entry(conn, "charge", 50, -100, job.id)  # wrong shape
        with pytest.raises(REFUSED, match=r"FOREIGN KEY|matching hold"):
            await entry(conn, "charge", 0, -100, "ghost")


async def test_overspend_by_raw_sql_is_refused(db: Database) -> None:
    await db.ledger.balance(GUILD, ALICE)  # 200 available
    async with raw(db) as conn:
        with pytest.raises(REFUSED, match=CHECK):
            await entry(conn, "adjust", -201, 0)
        await conn.execute("BEGIN")
        with pytest.raises(REFUSED, match=CHECK):
            await conn.execute("UPDATE balances SET held = -1")
        await conn.execute("ROLLBACK")
    assert await db.ledger.verify() == []


async def test_ledger_is_append_only(db: Database) -> None:
    await db.jobs.create_with_hold(request())
    async with raw(db) as conn:
        with pytest.raises(REFUSED, match="append-only"):
            await conn.execute("UPDATE ledger SET delta_available = 1000000")
        with pytest.raises(REFUSED, match="append-only"):
            await conn.execute("DELETE FROM ledger")
        # A permit for another member does not open this member's entries.
        await conn.execute("BEGIN")
        await conn.execute("INSERT INTO ledger_erasure (guild_id, user_id) VALUES (?, ?)", (GUILD, BOB))
        with pytest.raises(REFUSED, match="append-only"):
            await conn.execute("DELETE FROM ledger WHERE user_id = ?", (ALICE,))
        await conn.execute("ROLLBACK")
    assert await db.ledger.verify() == []


async def test_job_cannot_finish_unsettled_or_move_backwards(db: Database) -> None:
    job = await db.jobs.create_with_hold(request())
    async with raw(db) as conn:
        with pytest.raises(REFUSED, match="illegal"):
            await conn.execute("UPDATE jobs SET state = 'completed' WHERE id = ?", (job.id,))
        await conn.execute("UPDATE jobs SET state = 'submitting' WHERE id = ?", (job.id,))
        await conn.execute("UPDATE jobs SET state = 'running' WHERE id = ?", (job.id,))
        await conn.execute("UPDATE jobs SET state = 'completed' WHERE id = ?", (job.id,))
        with pytest.raises(REFUSED, match="settled"):
            await conn.execute("UPDATE jobs SET state = 'delivered' WHERE id = ?", (job.id,))
        await entry(conn, "charge", 0, -100, job.id)
        with pytest.raises(REFUSED, match="charged job cannot fail"):
            await conn.execute("UPDATE jobs SET state = 'failed' WHERE id = ?", (job.id,))
        await conn.execute("UPDATE jobs SET state = 'delivered' WHERE id = ?", (job.id,))
        with pytest.raises(REFUSED, match="illegal"):
            await conn.execute("UPDATE jobs SET state = 'running' WHERE id = ?", (job.id,))


async def test_verify_reports_a_tampered_cache(db: Database) -> None:
    await db.jobs.create_with_hold(request())
    async with raw(db) as conn:
        await conn.execute("UPDATE balances SET available = available + 5")
    problems = await db.ledger.verify()
    assert len(problems) == 1 and "cached available=105" in problems[0]


async def test_truncate_is_refused_on_postgresql(db: Database) -> None:
    """TRUNCATE skips row triggers, so PostgreSQL's schema refuses it for the ledger outright."""
    if db.url is None:
        pytest.skip("SQLite has no TRUNCATE")
    await db.jobs.create_with_hold(request())
    async with raw(db) as conn:
        with pytest.raises(REFUSED, match="append-only"):
            await conn.execute("TRUNCATE ledger CASCADE")
    assert len(await db.ledger.entries(GUILD, ALICE)) == 2
