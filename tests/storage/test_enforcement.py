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
from tests.storage.ledger_ops import settle

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
    assert await settle(db, job.id) is False
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


# ---- amounts (migration 0004) ------------------------------------------------------------------------------------


def literal_entry(conn: sqlite3.Connection, kind: str, da: str, dh: str) -> None:
    """An entry whose amounts are SQL literals: what Python's sqlite3 would refuse to bind (2^63) goes through."""
    conn.execute(
        "INSERT INTO ledger (guild_id, user_id, kind, delta_available, delta_held, created_at) "
        f"VALUES ({GUILD}, {ALICE}, '{kind}', {da}, {dh}, 0)"
    )


@pytest.mark.parametrize(
    ("da", "dh"),
    [
        ("1.5", "0"),  # REAL
        ("'ten'", "0"),  # TEXT that is no number
        ("'2.5'", "0"),  # TEXT that becomes a REAL
        ("9223372036854775808", "0"),  # 2^63: SQLite reads it as a REAL
        ("1000000001", "0"),  # an integer beyond one entry's bound
        ("-1000000001", "0"),
        ("0", "0.5"),
        ("X'00'", "0"),  # a BLOB
    ],
)
@pytest.mark.parametrize("backend", ["sqlite"])  # typeof(): SQLite stores any type
async def test_a_non_integer_or_out_of_range_delta_is_refused(db: Database, db_path: Path, da: str, dh: str) -> None:
    await db.ledger.balance(GUILD, ALICE)  # 200 available
    with raw_sqlite(db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="whole number of credits within bounds"):
            literal_entry(conn, "adjust", da, dh)
        literal_entry(conn, "adjust", "'10'", "0")  # text that is an integer is stored as the integer 10
        assert conn.execute("SELECT typeof(available), available FROM balances").fetchone() == ("integer", 210)
    assert await db.ledger.verify() == []


@pytest.mark.parametrize("backend", ["sqlite"])  # typeof(): SQLite stores any type
async def test_a_balance_cannot_pass_its_cap_or_stop_being_an_integer(db: Database, db_path: Path) -> None:
    await db.ledger.balance(GUILD, ALICE)  # 200 available
    with raw_sqlite(db_path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        for sql in ("UPDATE balances SET available = 1000000001", "UPDATE balances SET available = 2.5",
                    "UPDATE balances SET held = 999999999"):  # 200 + 999,999,999 > 10^9
            with pytest.raises(sqlite3.IntegrityError, match="balance is not a whole number"):
                conn.execute(sql)
        with pytest.raises(sqlite3.IntegrityError, match="balance is not a whole number"):
            conn.execute(f"INSERT INTO balances (guild_id, user_id, available, held, created_at) "
                         f"VALUES ({GUILD}, {BOB}, 9223372036854775808, 0, 0)")
        conn.execute("ROLLBACK")
        # Through the ledger: entries that each fit but would sum past the cap.
        literal_entry(conn, "adjust", "999999800", "0")  # exactly 10^9
        with pytest.raises(sqlite3.IntegrityError, match="balance is not a whole number"):
            literal_entry(conn, "adjust", "1", "0")
    assert (await db.ledger.balance(GUILD, ALICE)).available == 1_000_000_000
    assert await db.ledger.verify() == []


@pytest.mark.parametrize("backend", ["sqlite"])  # typeof(): SQLite stores any type
async def test_verify_reports_amounts_written_before_the_bounds(db: Database, db_path: Path) -> None:
    """A database corrupted before migration 0004 (the triggers only guard new writes) fails the audit."""
    await db.ledger.balance(GUILD, ALICE)
    with raw_sqlite(db_path) as conn:
        conn.execute("DROP TRIGGER ledger_amounts_in_range")
        conn.execute("DROP TRIGGER balances_update_in_range")
        literal_entry(conn, "adjust", "9223372036854775000", "0")
    problems = await db.ledger.verify()
    assert any("not a whole number within bounds" in p and "ledger entry" in p for p in problems), problems
    assert any("not a whole number within bounds" in p and "balance" in p for p in problems), problems


def raw_sqlite(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.parametrize(
    ("da", "dh", "refusal"),
    [
        ("1000000001", "0", CHECK),  # an integer beyond one entry's bound: the CHECK
        ("-1000000001", "0", CHECK),
        ("0", "1000000001", CHECK),
        ("'ten'", "0", "invalid input syntax"),  # BIGINT columns take nothing but integers
        ("9223372036854775808", "0", "out of range"),  # 2^63 does not fit a BIGINT
    ],
)
async def test_postgres_refuses_amounts_outside_bounds_or_not_integers(db: Database, da: str, dh: str,
                                                                       refusal: str) -> None:
    await db.ledger.balance(GUILD, ALICE)  # 200 available
    async with raw(db) as conn:
        with pytest.raises((*REFUSED, asyncpg.DataError), match=refusal):
            await conn.execute(
                "INSERT INTO ledger (guild_id, user_id, kind, delta_available, delta_held, created_at) "
                f"VALUES ({GUILD}, {ALICE}, 'adjust', {da}, {dh}, 0)"
            )
        await conn.execute("UPDATE balances SET held = 0")  # within bounds: fine
        with pytest.raises(REFUSED, match=CHECK):
            await conn.execute("UPDATE balances SET held = 999999999")  # 200 + 999,999,999 > 10^9
    assert await db.ledger.verify() == []


PG_0004 = (Path(__file__).resolve().parents[2] / "storage/migrations/postgres/0004_amount_bounds.sql").read_text()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_postgres_verify_reports_amounts_written_before_the_bounds(db: Database) -> None:
    await db.ledger.balance(GUILD, ALICE)
    async with raw(db) as conn:
        await conn.execute("ALTER TABLE ledger DROP CONSTRAINT ledger_amounts_in_range")
        await conn.execute("ALTER TABLE balances DROP CONSTRAINT balances_in_range")
        try:
            await entry(conn, "adjust", 9_000_000_000, 0)
            problems = await db.ledger.verify()
        finally:  # the test database is reused: put the schema back as migration 0004 left it
            await conn.execute(PG_0004)
    assert any("not a whole number within bounds" in p and "ledger entry" in p for p in problems), problems
    assert any("not a whole number within bounds" in p and "balance" in p for p in problems), problems
