"""The database: repositories over one backend, SQLite (a file) or PostgreSQL (a `postgresql://` URL).

Callers see one API whichever backend runs underneath: `Database.open(target)`, the repositories
(`db.guilds`, `db.ledger`, `db.jobs`, `db.reports`), `db.write()` / `db.snapshot()` transactions and
`db.fetchone/fetchall` with `?` placeholders. The backends live in storage.sqlite and storage.postgres.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from storage import postgres
from storage.conn import Conn, Params, Presence, Row
from storage.guard import hold_sqlite
from storage.guilds import Guilds
from storage.jobs import Jobs
from storage.leases import Leases
from storage.ledger import Ledger
from storage.postgres import PostgresBackend
from storage.reports import Reports
from storage.sqlite import SQLiteBackend
from storage.tiers import Tiers

log = logging.getLogger(__name__)

__all__ = ["Database"]


class Database:
    """Repositories over one database; see storage.sqlite and storage.postgres for how each one writes.

    `path` is the SQLite file (None on PostgreSQL); `url` is the PostgreSQL URL (None on SQLite);
    `backend` names which one this is.
    """

    def __init__(self, backend: SQLiteBackend | PostgresBackend, clock: Callable[[], float]) -> None:
        self._backend = backend
        self.backend = backend.name
        self.path: Path | None = backend.path
        self.url: str | None = getattr(backend, "url", None)
        self.clock = clock
        self._local_locks: weakref.WeakValueDictionary[tuple[str, int], asyncio.Lock] = (
            weakref.WeakValueDictionary())
        self.guilds = Guilds(self)
        self.ledger = Ledger(self)
        self.jobs = Jobs(self)
        self.leases = Leases(self)
        self.reports = Reports(self)
        self.tiers = Tiers(self)

    @classmethod
    async def open(cls, target: str | Path, *, clock: Callable[[], float] = time.time,
                   pool_size: int = postgres.POOL_MAX) -> Database:
        """Open (creating if needed) and migrate the database `target` names.

        Args:
            target: a `postgresql://user:pass@host:port/db` URL, or an SQLite file path (its folder is created).
            clock: UNIX seconds; tests inject one to move time instead of sleeping.
            pool_size: most PostgreSQL connections this process opens (ignored for SQLite).
        Raises:
            SchemaTooNew: the database was written by a newer version of the bot.
        """
        backend: SQLiteBackend | PostgresBackend
        if postgres.is_url(target):
            backend, version = await PostgresBackend.open(str(target), max_size=pool_size)
        else:
            backend, version = await SQLiteBackend.open(Path(target))
        log.info("database open: %s %s (schema version %s)", backend.name, backend.describe(), version)
        return cls(backend, clock)

    def describe(self) -> str:
        """Where the data lives, without credentials: the file path or the redacted URL."""
        return self._backend.describe()

    async def close(self) -> None:
        """Wait for the write in progress, then close every connection (idempotent)."""
        await self._backend.close()

    def local_lock(self, name: str, key: int) -> asyncio.Lock:
        """An asyncio.Lock for one scope in this process (kept while someone holds or waits for it).

        Not a substitute for the database's own locks (other processes do not see it): a way to queue work
        that would queue inside the database anyway without occupying a pooled connection meanwhile.
        """
        lock = self._local_locks.get((name, key))
        if lock is None:
            lock = asyncio.Lock()
            self._local_locks[(name, key)] = lock
        return lock

    def now(self) -> float:
        """The injected clock, in UNIX seconds."""
        return self.clock()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Conn]:
        """One write transaction, committed at the end and rolled back if the body raises or is cancelled.

        SQLite: BEGIN IMMEDIATE, one writer at a time in this process. PostgreSQL: READ COMMITTED on a pooled
        connection, concurrent with others; repositories take the row and advisory locks their rules need.
        """
        async with self._backend.write() as conn:
            yield conn

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Conn]:
        """A read transaction: several queries that see one consistent state of the database."""
        async with self._backend.snapshot() as conn:
            yield conn

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """Run one query outside any transaction and return its first row."""
        return await self._backend.fetchone(sql, params)

    @property
    def shared(self) -> bool:
        """Whether other processes may share this database's jobs (PostgreSQL); SQLite serves one process."""
        return self.backend == "postgresql"

    def hold_single_process(self) -> Callable[[], None]:
        """SQLite: take the lock that keeps a second process from driving this file's jobs (storage.guard), and
        return its release; PostgreSQL: nothing to hold (processes share it through leases).

        Raises:
            DatabaseInUse: another process holds this SQLite file.
        """
        if self.path is None:
            return lambda: None
        return hold_sqlite(self.path)

    async def notify(self, payload: str) -> None:
        """Wake the other processes (PostgreSQL NOTIFY on one channel); nothing on SQLite, one process per file."""
        await self._backend.notify(payload)

    async def open_presence(self, name: str, on_message: Callable[[str], None]) -> Presence:
        """Be seen alive under `name` until closed, and hear other processes' wake-ups (storage.leases)."""
        return await self._backend.open_presence(name, on_message)

    async def ping(self) -> None:
        """One trivial query: raises when the database does not answer (health checks)."""
        await self.fetchone("SELECT 1")

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Run one query outside any transaction and return all its rows."""
        return await self._backend.fetchall(sql, params)

