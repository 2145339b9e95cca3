"""The SQLite backend: one writer connection serialised by a lock, one reader, migrations on open.

Everything SQLite-specific about running statements lives here; the schema lives in storage/migrations/.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from storage.conn import NoPresence, Params, Result, Row, to_the_end
from storage.errors import ConstraintViolation
from storage.migrate import migrate

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000


class SQLiteConn:
    """`storage.conn.Conn` over one aiosqlite connection."""

    backend = "sqlite"
    for_update = ""  # one writer at a time (BEGIN IMMEDIATE behind a lock) already excludes everyone else
    skip_locked = ""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.raw = conn

    async def execute(self, sql: str, params: Params = ()) -> Result:
        try:
            cursor = await self.raw.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise ConstraintViolation(str(exc)) from exc
        try:
            return Result(cursor.rowcount)
        finally:
            await cursor.close()

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        try:
            async with self.raw.execute(sql, params) as cursor:
                return await cursor.fetchone()
        except sqlite3.IntegrityError as exc:
            raise ConstraintViolation(str(exc)) from exc

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            async with self.raw.execute(sql, params) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.IntegrityError as exc:
            raise ConstraintViolation(str(exc)) from exc

    async def lock(self, name: str, key: int, *, shared: bool = False) -> None:
        return None  # the write lock and the file lock already make every write transaction exclusive

    def day_number(self, column: str) -> str:
        # CAST truncates towards zero; callers only ask for times at or after the parameter.
        return f"CAST(({column} - ?) / 86400 AS INTEGER)"

    def whole_number(self, column: str) -> str:
        return f"typeof({column}) = 'integer'"

    def live_process(self, column: str) -> str:
        # One process per file (the guard): registering removes the rows of earlier runs, so only live ones remain.
        return f"{column} IN (SELECT name FROM processes)"


class SQLiteBackend:
    """One SQLite file: every write in BEGIN IMMEDIATE … COMMIT, one at a time behind an asyncio.Lock.

    No two coroutines can read-then-write the same balance and "database is locked" never reaches a caller.
    Reads use a second connection: WAL lets it see committed data while a write is in progress.
    """

    name = "sqlite"

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self.path = path
        self._writer = SQLiteConn(writer)
        self._reader = SQLiteConn(reader)
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls, path: Path) -> tuple[SQLiteBackend, int]:
        """Open (creating the folder and file if needed) and migrate; (backend, schema version).

        Raises:
            SchemaTooNew: the file was written by a newer version of the bot.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _connect(path)
        reader: aiosqlite.Connection | None = None
        try:
            # WAL is a property of the file; set it once from the writer.
            await writer.execute("PRAGMA journal_mode = WAL")
            version = await migrate(writer)
            reader = await _connect(path)
            await reader.execute("PRAGMA query_only = ON")
        except BaseException:
            await writer.close()
            if reader is not None:
                await reader.close()
            raise
        return cls(path, writer, reader), version

    def describe(self) -> str:
        return str(self.path)

    async def close(self) -> None:
        """Wait for the write in progress, then close both connections (idempotent)."""
        if self._closed:
            return
        async with self._write_lock:
            self._closed = True
            await self._reader.raw.close()
            # A clean close checkpoints the WAL into the main file.
            await self._writer.raw.close()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SQLiteConn]:
        """One write transaction: BEGIN IMMEDIATE … COMMIT, rolled back if the body raises or is cancelled.

        The connection is back in autocommit before the lock is released, even when the task is cancelled
        mid-statement. A task cancelled during COMMIT may still have committed (as with any database).
        """
        async with self._write_lock:
            conn = self._writer.raw
            try:
                await conn.execute("BEGIN IMMEDIATE")
                yield self._writer
                await to_the_end(conn.execute("COMMIT"))
            except BaseException:
                await to_the_end(_end_transaction(conn, "ROLLBACK"))
                raise

    async def notify(self, payload: str) -> None:
        return None  # one process per file: nobody else to wake

    async def open_presence(self, name: str, on_message: Callable[[str], None]) -> NoPresence:
        return NoPresence()

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[SQLiteConn]:
        """A read transaction: several queries that see one consistent state of the database."""
        async with self._read_lock:
            conn = self._reader.raw
            try:
                await conn.execute("BEGIN")
                yield self._reader
            finally:
                await to_the_end(_end_transaction(conn, "COMMIT"))

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        async with self._read_lock:
            return await self._reader.fetchone(sql, params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._read_lock:
            return await self._reader.fetchall(sql, params)


async def _end_transaction(conn: aiosqlite.Connection, verb: str) -> None:
    # aiosqlite runs statements in order on its thread: a no-op query first lets every statement already
    # queued (say, a BEGIN whose caller was cancelled) finish, so in_transaction is then the truth.
    await conn.execute("SELECT 1")
    if conn.in_transaction:
        await conn.execute(verb)


async def _connect(path: Path) -> aiosqlite.Connection:
    # isolation_level=None: the sqlite3 module never opens transactions behind our back; we BEGIN ourselves.
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = aiosqlite.Row
    await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    await conn.execute("PRAGMA foreign_keys = ON")
    # FULL: a committed hold or charge survives power loss, not only a crash. It costs one fsync per commit,
    # and this bot commits a handful of times per video.
    await conn.execute("PRAGMA synchronous = FULL")
    return conn
