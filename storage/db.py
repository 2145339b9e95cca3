"""The SQLite database: one writer connection serialised by a lock, one reader, migrations on open."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from storage.migrate import migrate

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000

Params = Iterable[Any] | dict[str, Any]
T = TypeVar("T")


class Database:
    """Repositories over one SQLite file.

    Every write runs in an explicit BEGIN IMMEDIATE transaction on the single writer connection, one at a
    time behind an asyncio.Lock, so no two coroutines can read-then-write the same balance and "database is
    locked" never reaches a caller. Reads use a second connection: WAL lets it see committed data while a
    write is in progress.
    """

    def __init__(
        self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection, clock: Callable[[], float]
    ) -> None:
        from storage.guilds import Guilds
        from storage.jobs import Jobs
        from storage.ledger import Ledger
        from storage.reports import Reports

        self.path = path
        self.clock = clock
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()
        self._closed = False
        self.guilds = Guilds(self)
        self.ledger = Ledger(self)
        self.jobs = Jobs(self)
        self.reports = Reports(self)

    @classmethod
    async def open(cls, path: str | Path, *, clock: Callable[[], float] = time.time) -> Database:
        """Open (creating if needed) and migrate the database at `path`.

        Raises:
            SchemaTooNew: the file was written by a newer version of the bot.
        """
        path = Path(path)
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
        log.info("database open at %s (schema version %s)", path, version)
        return cls(path, writer, reader, clock)

    async def close(self) -> None:
        """Wait for the write in progress, then close both connections (idempotent)."""
        if self._closed:
            return
        async with self._write_lock:
            self._closed = True
            await self._reader.close()
            # A clean close checkpoints the WAL into the main file.
            await self._writer.close()

    def now(self) -> float:
        """The injected clock, in UNIX seconds."""
        return self.clock()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: BEGIN IMMEDIATE … COMMIT, rolled back if the body raises or is cancelled.

        The connection is back in autocommit before the lock is released, even when the task is cancelled
        mid-statement. A task cancelled during COMMIT may still have committed (as with any database).
        """
        async with self._write_lock:
            conn = self._writer
            try:
                await conn.execute("BEGIN IMMEDIATE")
                yield conn
                await _to_the_end(conn.execute("COMMIT"))
            except BaseException:
                await _to_the_end(_end_transaction(conn, "ROLLBACK"))
                raise

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[aiosqlite.Connection]:
        """A read transaction: several queries that see one consistent state of the database."""
        async with self._read_lock:
            conn = self._reader
            try:
                await conn.execute("BEGIN")
                yield conn
            finally:
                await _to_the_end(_end_transaction(conn, "COMMIT"))

    async def fetchone(self, sql: str, params: Params = ()) -> aiosqlite.Row | None:
        """Run one query on the reader and return its first row."""
        async with self._read_lock, self._reader.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def ping(self) -> None:
        """One trivial query: raises when the database does not answer (health checks)."""
        await self.fetchone("SELECT 1")

    async def fetchall(self, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
        """Run one query on the reader and return all its rows."""
        async with self._read_lock, self._reader.execute(sql, params) as cursor:
            return list(await cursor.fetchall())


async def _end_transaction(conn: aiosqlite.Connection, verb: str) -> None:
    # aiosqlite runs statements in order on its thread: a no-op query first lets every statement already
    # queued (say, a BEGIN whose caller was cancelled) finish, so in_transaction is then the truth.
    await conn.execute("SELECT 1")
    if conn.in_transaction:
        await conn.execute(verb)


async def _to_the_end(aw: Awaitable[T]) -> T:
    """Await `aw` to completion even if this task is cancelled meanwhile, then pass the cancellation on.

    Cleanup that leaves a shared connection inside a transaction would break every later caller.
    """
    task = asyncio.ensure_future(aw)
    interrupted = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            interrupted = True
    if interrupted:
        raise asyncio.CancelledError
    return result


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


async def fetchone(conn: aiosqlite.Connection, sql: str, params: Params = ()) -> aiosqlite.Row | None:
    """Run one query on `conn` (inside a transaction the caller holds) and return its first row."""
    async with conn.execute(sql, params) as cursor:
        return await cursor.fetchone()


async def fetchall(conn: aiosqlite.Connection, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
    """Run one query on `conn` (inside a transaction the caller holds) and return all its rows."""
    async with conn.execute(sql, params) as cursor:
        return list(await cursor.fetchall())
