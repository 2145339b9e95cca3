"""The database itself refuses what would lose money, even when raw SQL bypasses the code."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage.db import Database

from .conftest import ALICE, BOB, GUILD, request, run_to_completed


def raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def entry(conn: sqlite3.Connection, kind: str, da: int, dh: int, job_id: str | None = None) -> None:
    conn.execute(
        "INSERT INTO ledger (guild_id, user_id, kind, delta_available, delta_held, job_id, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, 0)",
        (GUILD, ALICE, kind, da, dh, job_id),
    )


async def test_double_settlement_by_raw_sql_is_refused(db: Database, db_path: Path) -> None:
    job = await db.jobs.create_with_hold(request())
    await run_to_completed(db, job.id)
    await db.jobs.finish_delivered(job.id, None)
    with raw(db_path) as conn:
        for kind, da, dh in (("charge", 0, -100), ("release", 100, -100)):
            with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
                entry(conn, kind, da, dh, job.id)
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            entry(conn, "hold", -100, 100, job.id)
        entry(conn, "refund", 100, 0, job.id)
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            entry(conn, "refund", 100, 0, job.id)
    assert await db.ledger.settle(job.id) is False
    assert await db.ledger.verify() == []


async def test_settlement_must_match_its_hold(db: Database, db_path: Path) -> None:
    job = await db.jobs.create_with_hold(request())
    with raw(db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="matching hold"):
            entry(conn, "release", 300, -300, job.id)  # more than was held
        with pytest.raises(sqlite3.IntegrityError, match="matching charge"):
            entry(conn, "refund", 100, 0, job.id)  # refund before any charge
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            entry(conn, "charge", 50, -100, job.id)  # wrong shape
        with pytest.raises(sqlite3.IntegrityError, match=r"FOREIGN KEY|matching hold"):
            entry(conn, "charge", 0, -100, "ghost")


async def test_overspend_by_raw_sql_is_refused(db: Database, db_path: Path) -> None:
    await db.ledger.balance(GUILD, ALICE)  # 200 available
    with raw(db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            entry(conn, "adjust", -201, 0)
        conn.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute("UPDATE balances SET held = -1")
        conn.execute("ROLLBACK")
    assert await db.ledger.verify() == []


async def test_ledger_is_append_only(db: Database, db_path: Path) -> None:
    await db.jobs.create_with_hold(request())
    with raw(db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE ledger SET delta_available = 1000000")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM ledger")
        # A permit for another member does not open this member's entries.
        conn.execute("BEGIN")
        conn.execute("INSERT INTO ledger_erasure (guild_id, user_id) VALUES (?, ?)", (GUILD, BOB))
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM ledger WHERE user_id = ?", (ALICE,))
        conn.execute("ROLLBACK")
    assert await db.ledger.verify() == []


async def test_job_cannot_finish_unsettled_or_move_backwards(db: Database, db_path: Path) -> None:
    job = await db.jobs.create_with_hold(request())
    with raw(db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="illegal"):
            conn.execute("UPDATE jobs SET state = 'completed' WHERE id = ?", (job.id,))
        conn.execute("UPDATE jobs SET state = 'submitting' WHERE id = ?", (job.id,))
        conn.execute("UPDATE jobs SET state = 'running' WHERE id = ?", (job.id,))
        conn.execute("UPDATE jobs SET state = 'completed' WHERE id = ?", (job.id,))
        with pytest.raises(sqlite3.IntegrityError, match="settled"):
            conn.execute("UPDATE jobs SET state = 'delivered' WHERE id = ?", (job.id,))
        entry(conn, "charge", 0, -100, job.id)
        with pytest.raises(sqlite3.IntegrityError, match="charged job cannot fail"):
            conn.execute("UPDATE jobs SET state = 'failed' WHERE id = ?", (job.id,))
        conn.execute("UPDATE jobs SET state = 'delivered' WHERE id = ?", (job.id,))
        with pytest.raises(sqlite3.IntegrityError, match="illegal"):
            conn.execute("UPDATE jobs SET state = 'running' WHERE id = ?", (job.id,))


async def test_verify_reports_a_tampered_cache(db: Database, db_path: Path) -> None:
    await db.jobs.create_with_hold(request())
    with raw(db_path) as conn:
        conn.execute("UPDATE balances SET available = available + 5")
    problems = await db.ledger.verify()
    assert len(problems) == 1 and "cached available=105" in problems[0]
