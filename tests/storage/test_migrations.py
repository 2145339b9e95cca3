"""Schema versions on both backends: fresh install, upgrade of an older database, refusal of a newer one, and
the same schema for the same version number."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiosqlite
import asyncpg
import pytest

from storage.db import Database
from storage.errors import SchemaTooNew
from storage.migrate import Migration, latest_version, load_migrations, migrate, split_statements

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


# ---- PostgreSQL: the same history, tracked in schema_version ------------------------------------------------


def test_both_backends_have_the_same_numbered_history() -> None:
    sqlite_names = [m.name for m in load_migrations()]
    postgres_names = [m.name for m in load_migrations("postgresql")]
    assert sqlite_names == postgres_names


# SQLite cannot add a CHECK to an existing table, so migration 0004 guards amounts with triggers there; on
# PostgreSQL the same rules are CHECK constraints (storage/migrations/postgres/0004_amount_bounds.sql).
SQLITE_TRIGGERS_AS_PG_CHECKS = {
    "ledger_amounts_in_range": "ledger_amounts_in_range",
    "balances_insert_in_range": "balances_in_range",
    "balances_update_in_range": "balances_in_range",
}


async def _sqlite_shape(path: Path) -> dict[str, object]:
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        columns = {t: [(r[1], bool(r[3]) or bool(r[5])) for r in conn.execute(f"PRAGMA table_info({t})")]
                   for t in tables}
        indexes = sorted(r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'"))
        triggers = sorted({SQLITE_TRIGGERS_AS_PG_CHECKS.get(r[0], r[0]) for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'")})
    return {"columns": columns, "indexes": indexes, "triggers": triggers}


async def _postgres_shape(conn: asyncpg.Connection) -> dict[str, object]:
    tables = [r["table_name"] for r in await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
        "AND table_name <> 'schema_version' ORDER BY table_name")]
    columns = {}
    for table in tables:
        rows = await conn.fetch(
            "SELECT column_name, is_nullable, (SELECT COUNT(*) FROM information_schema.key_column_usage k "
            "JOIN information_schema.table_constraints c ON c.constraint_name = k.constraint_name "
            "WHERE c.constraint_type = 'PRIMARY KEY' AND k.table_name = $1 AND k.column_name = col.column_name) "
            "AS pk FROM information_schema.columns col WHERE table_schema = 'public' AND table_name = $1 "
            "ORDER BY ordinal_position", table)
        columns[table] = [(r["column_name"], r["is_nullable"] == "NO" or r["pk"] > 0) for r in rows]
    indexes = sorted(r["indexname"] for r in await conn.fetch(
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexname NOT LIKE '%_pkey' "
        "AND indexname NOT LIKE '%_key'"))
    triggers = {r["tgname"] for r in await conn.fetch("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")}
    checks = {r["conname"] for r in await conn.fetch("SELECT conname FROM pg_constraint WHERE contype = 'c'")}
    triggers |= checks & set(SQLITE_TRIGGERS_AS_PG_CHECKS.values())
    triggers = sorted(triggers - {"ledger_no_truncate"})  # TRUNCATE: PostgreSQL only
    return {"columns": columns, "indexes": indexes, "triggers": triggers}


async def test_every_version_means_the_same_schema_on_both(tmp_path: Path, pg_empty_url: str) -> None:
    """Tables, columns (in order, with NOT NULL), indexes and triggers agree after each migration."""
    from storage import postgres

    path = tmp_path / "shape.db"
    conn = await asyncpg.connect(pg_empty_url)
    try:
        async with aiosqlite.connect(path, isolation_level=None) as lite:
            for version in range(1, latest_version() + 1):
                assert await migrate(lite, target=version) == version
                assert await postgres.migrate(conn, target=version) == version
                shape = await _sqlite_shape(path)
                assert shape == await _postgres_shape(conn), f"version {version}"
        assert "upload_limit" in [name for name, _ in shape["columns"]["jobs"]]  # type: ignore[index]
        assert "ledger_apply" in shape["triggers"]  # type: ignore[operator]
    finally:
        await conn.close()


async def test_postgres_fresh_database_is_at_latest_version(pg_empty_url: str) -> None:
    db = await Database.open(pg_empty_url)
    await db.close()
    conn = await asyncpg.connect(pg_empty_url)
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY version")]
    finally:
        await conn.close()
    assert versions == list(range(1, latest_version() + 1))


async def test_postgres_upgrade_from_version_1_keeps_data(pg_empty_url: str) -> None:
    from storage import postgres

    conn = await asyncpg.connect(pg_empty_url)
    try:
        assert await postgres.migrate(conn, target=1) == 1
        await conn.execute(
            "INSERT INTO ledger (guild_id, user_id, kind, delta_available, delta_held, reason, created_at) "
            "VALUES ($1, $2, 'grant', 300, 0, 'old', 0)", GUILD, ALICE)
    finally:
        await conn.close()
    db = await Database.open(pg_empty_url)
    try:
        assert (await db.ledger.balance(GUILD, ALICE)).available == 300
        assert await db.ledger.verify() == []
        assert await db.fetchone("SELECT 1 FROM pg_indexes WHERE indexname = 'jobs_guild_created'") is not None
        assert (await db.fetchone("SELECT MAX(version) AS v FROM schema_version"))["v"] == latest_version()
    finally:
        await db.close()


async def test_postgres_newer_schema_is_refused(pg_empty_url: str) -> None:
    db = await Database.open(pg_empty_url)
    await db.close()
    conn = await asyncpg.connect(pg_empty_url)
    try:
        await conn.execute("INSERT INTO schema_version (version, name) VALUES ($1, 'from the future')",
                           latest_version() + 1)
        with pytest.raises(SchemaTooNew) as caught:
            await Database.open(pg_empty_url)
        assert caught.value.found == latest_version() + 1
        assert await conn.fetchval("SELECT MAX(version) FROM schema_version") == latest_version() + 1
    finally:
        await conn.close()


async def test_postgres_failed_migration_rolls_back(pg_empty_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import storage.postgres as postgres_module

    real = postgres_module.load_migrations

    def broken(backend: str = "sqlite") -> list[Migration]:
        first = real(backend)[0]
        return [Migration(1, first.name, first.sql + "\nCREATE TABLE jobs (x INTEGER);")]

    monkeypatch.setattr(postgres_module, "load_migrations", broken)
    with pytest.raises(asyncpg.DuplicateTableError):
        await Database.open(pg_empty_url)
    conn = await asyncpg.connect(pg_empty_url)
    try:
        assert await conn.fetchval("SELECT COUNT(*) FROM schema_version") == 0
        assert await conn.fetchval("SELECT to_regclass('ledger')") is None
    finally:
        await conn.close()


async def test_two_processes_migrating_at_once_apply_each_version_once(pg_empty_url: str) -> None:
    results = await asyncio.gather(*(Database.open(pg_empty_url) for _ in range(4)))
    for db in results:
        await db.close()
    conn = await asyncpg.connect(pg_empty_url)
    try:
        assert await conn.fetchval("SELECT COUNT(*) FROM schema_version") == latest_version()
    finally:
        await conn.close()
