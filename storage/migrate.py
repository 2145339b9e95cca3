"""Numbered .sql migrations applied in order, one transaction each.

Two histories with the same numbers: storage/migrations/NNNN_*.sql for SQLite (version in PRAGMA
user_version, applied here) and storage/migrations/postgres/NNNN_*.sql for PostgreSQL (version in the
schema_version table, applied by storage.postgres). The same version number means the same schema on both.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

import aiosqlite

from storage.errors import SchemaTooNew, StorageError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


BACKENDS = ("sqlite", "postgresql")


def load_migrations(backend: str = "sqlite") -> list[Migration]:
    """Read one backend's NNNN_*.sql in version order; versions must run 1, 2, 3 … without gaps."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    folder = resources.files("storage.migrations")
    if backend == "postgresql":
        folder = folder.joinpath("postgres")
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise StorageError(f"migration {migration.name} is out of sequence (expected version {expected})")
    return found


def latest_version() -> int:
    """The schema version this code writes (on either backend).

    Raises:
        StorageError: the two histories disagree (a migration was added for one backend only).
    """
    migrations = load_migrations()
    mirrored = load_migrations("postgresql")
    if [(m.version, m.name) for m in migrations] != [(m.version, m.name) for m in mirrored]:
        raise StorageError("the SQLite and PostgreSQL migrations differ: every version needs both")
    return migrations[-1].version if migrations else 0


def split_statements(sql: str) -> list[str]:
    """Split a script into whole statements (triggers keep their inner semicolons), as the sqlite shell does.

    Statements run one by one with execute(), because executescript() would commit our transaction first.
    """
    statements: list[str] = []
    buffer = ""
    for piece in sql.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if _has_code(buffer):
                statements.append(buffer.strip())
            buffer = ""
    if _has_code(buffer[:-1]):
        raise StorageError("migration ends with an incomplete statement")
    return statements


def _has_code(text: str) -> bool:
    lines = (line.split("--", 1)[0].strip() for line in text.splitlines())
    return any(line and line != ";" for line in lines)


async def migrate(conn: aiosqlite.Connection, *, target: int | None = None) -> int:
    """Bring the schema up to `target` (default: the latest), refusing a database newer than the code.

    Each migration runs in its own BEGIN IMMEDIATE transaction that re-reads the version first, so two
    processes opening the same file at once cannot apply the same migration twice.

    Returns:
        The schema version after migrating.
    Raises:
        SchemaTooNew: the file's version is above what this code knows.
    """
    migrations = load_migrations()
    supported = migrations[-1].version if migrations else 0
    goal = supported if target is None else target
    version = await _user_version(conn)
    if version > supported:
        raise SchemaTooNew(version, supported)
    for migration in migrations:
        if migration.version > goal:
            break
        await conn.execute("BEGIN IMMEDIATE")
        try:
            version = await _user_version(conn)
            if version > supported:
                raise SchemaTooNew(version, supported)
            if migration.version <= version:
                await conn.execute("ROLLBACK")
                continue
            for statement in split_statements(migration.sql):
                await conn.execute(statement)
            # PRAGMA takes no parameters; the version is an int we parsed from a file name.
            await conn.execute(f"PRAGMA user_version = {int(migration.version)}")
            await conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise
        log.info("applied migration %s", migration.name)
    return await _user_version(conn)


async def _user_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0
