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
async def test_a_non_integer_or_out_of_range_delta_is_refused(db: Database, db_path: Path, da: str, dh: str) -> None:
    await db.ledger.balance(GUILD, ALICE)  # 200 available
    with raw(db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="whole number of credits within bounds"):
            literal_entry(conn, "adjust", da, dh)
        literal_entry(conn, "adjust", "'10'", "0")  # text that is an integer is stored as the integer 10
        assert conn.execute("SELECT typeof(available), available FROM balances").fetchone() == ("integer", 210)
    assert await db.ledger.verify() == []


async def test_a_balance_cannot_pass_its_cap_or_stop_being_an_integer(db: Database, db_path: Path) -> None:
    await db.ledger.balance(GUILD, ALICE)  # 200 available
    with raw(db_path) as conn:
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


async def test_verify_reports_amounts_written_before_the_bounds(db: Database, db_path: Path) -> None:
    """A database corrupted before migration 0004 (the triggers only guard new writes) fails the audit."""
    await db.ledger.balance(GUILD, ALICE)
    with raw(db_path) as conn:
        conn.execute("DROP TRIGGER ledger_amounts_in_range")
        conn.execute("DROP TRIGGER balances_update_in_range")
        literal_entry(conn, "adjust", "9223372036854775000", "0")
    problems = await db.ledger.verify()
    assert any("not a whole number within bounds" in p and "ledger entry" in p for p in problems), problems
    assert any("not a whole number within bounds" in p and "balance" in p for p in problems), problems
