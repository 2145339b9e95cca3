"""Schema versions: fresh install, upgrade of an older file, refusal of a newer one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from storage.db import Database
from storage.errors import SchemaTooNew
from storage.migrate import latest_version, load_migrations, migrate, split_statements

from .conftest import ALICE, GUILD, request


def _user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert latest_version() >= 2


def test_split_keeps_trigger_bodies_whole() -> None:
    sql = """
    -- a comment; with a semicolon
    CREATE TABLE t (x TEXT DEFAULT 'a;b');
    CREATE TRIGGER tr BEFORE DELETE ON t BEGIN SELECT RAISE(ABORT, 'no'); SELECT 1; END;
    """
    statements = split_statements(sql)
    assert len(statements) == 2
    assert statements[1].endswith("END;")


async def test_fresh_database_is_at_latest_version_with_wal(db_path: Path) -> None:
    db = await Database.open(db_path)
    await db.close()
    assert _user_version(db_path) == latest_version()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_open_creates_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.db"
    db = await Database.open(path)
    await db.close()
    assert path.exists()


async def test_reopen_is_a_no_op(db_path: Path) -> None:
    db = await Database.open(db_path)
    await db.jobs.create_with_hold(request())
    await db.close()
    db = await Database.open(db_path)
    try:
        assert (await db.ledger.balance(GUILD, ALICE)).held == 100
    finally:
        await db.close()


async def test_upgrade_from_version_1_keeps_data(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    async with aiosqlite.connect(db_path, isolation_level=None) as conn:
        assert await migrate(conn, target=1) == 1
        await conn.execute(
            "INSERT INTO balances (guild_id, user_id, available, held, created_at) VALUES (?, ?, 0, 0, 0)",
            (GUILD, ALICE),
        )
        await conn.execute(
            "INSERT INTO ledger (guild_id, user_id, kind, delta_available, delta_held, reason, created_at) "
            "VALUES (?, ?, 'grant', 300, 0, 'old', 0)",
            (GUILD, ALICE),
        )
    assert _user_version(db_path) == 1
    db = await Database.open(db_path)
    try:
        assert _user_version(db_path) == latest_version()
        assert (await db.ledger.balance(GUILD, ALICE)).available == 300
        assert await db.ledger.verify() == []
        with sqlite3.connect(db_path) as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "jobs_guild_created" in names
    finally:
        await db.close()


async def test_newer_schema_is_refused(db_path: Path) -> None:
    db = await Database.open(db_path)
    await db.close()
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    with pytest.raises(SchemaTooNew) as caught:
        await Database.open(db_path)
    assert caught.value.found == latest_version() + 1
    assert "newer" in str(caught.value)
    assert _user_version(db_path) == latest_version() + 1  # left untouched


async def test_failed_migration_rolls_back(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import storage.migrate as migrate_module

    real = migrate_module.load_migrations

    def broken() -> list[migrate_module.Migration]:
        first = real()[0]
        return [migrate_module.Migration(1, first.name, first.sql + "\nCREATE TABLE jobs (x);")]

    monkeypatch.setattr(migrate_module, "load_migrations", broken)
    with pytest.raises(sqlite3.OperationalError):
        await Database.open(db_path)
    assert _user_version(db_path) == 0
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] == 0
