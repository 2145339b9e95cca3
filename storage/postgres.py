"""The PostgreSQL backend: an asyncpg pool, READ COMMITTED transactions with row and advisory locks.

Everything PostgreSQL-specific about running statements lives here; the schema lives in
storage/migrations/postgres/. Unlike SQLite there is no process-wide write lock: any number of transactions
(and processes) write at once, and the rules that span rows are kept by locks each transaction takes in
one fixed order — see docs/STORAGE.md, "Concurrency on PostgreSQL".
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from storage.conn import Params, Result, Row, to_the_end, translate_placeholders
from storage.errors import ConstraintViolation, SchemaTooNew
from storage.migrate import load_migrations

log = logging.getLogger(__name__)

SCHEMES = ("postgresql", "postgres")
POOL_MIN = 1
POOL_MAX = 10  # the bot's writes are short; 10 covers MAX_RUNNING_JOBS=20 runners plus the gateway


def is_url(target: object) -> bool:
    """Whether `target` names a PostgreSQL database (a postgresql:// URL) rather than an SQLite file."""
    return isinstance(target, str) and urlsplit(target).scheme in SCHEMES


def redact(url: str) -> str:
    """The URL without its user and password, for logs and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def lock_key(name: str, key: int) -> int:
    """A 64-bit advisory-lock key for one scope and id; a hash, since guild ids already use all 64 bits.

    A collision only makes two unrelated scopes wait for each other now and then; it never lets two
    holders of the same scope in at once.
    """
    digest = hashlib.blake2b(f"sora-bot:{name}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


MIGRATION_LOCK = lock_key("migrations", 0)
NOTIFY_CHANNEL = "sora_jobs"  # the one channel of wake-ups between processes (storage.leases)


@lru_cache(maxsize=2048)
def _sql(sql: str) -> str:
    return translate_placeholders(sql)


def _rowcount(status: str) -> int:
    # "INSERT 0 1", "UPDATE 3", "DELETE 0", "SELECT 2": the last word is the number of rows.
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PgConn:
    """`storage.conn.Conn` over one asyncpg connection."""

    backend = "postgresql"
    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.raw = conn
        self._held: set[tuple[int, bool]] = set()  # advisory locks this transaction already holds

    async def execute(self, sql: str, params: Params = ()) -> Result:
        try:
            return Result(_rowcount(await self.raw.execute(_sql(sql), *params)))
        except (asyncpg.IntegrityConstraintViolationError, asyncpg.RaiseError) as exc:
            raise ConstraintViolation(str(exc)) from exc

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        try:
            return await self.raw.fetchrow(_sql(sql), *params)
        except (asyncpg.IntegrityConstraintViolationError, asyncpg.RaiseError) as exc:
            raise ConstraintViolation(str(exc)) from exc

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            return list(await self.raw.fetch(_sql(sql), *params))
        except (asyncpg.IntegrityConstraintViolationError, asyncpg.RaiseError) as exc:
            raise ConstraintViolation(str(exc)) from exc

    async def lock(self, name: str, key: int, *, shared: bool = False) -> None:
        # One PgConn lives for one transaction: a lock taken again (a helper re-taking its caller's) costs
        # nothing, and an exclusive lock already held covers a shared request.
        lock = lock_key(name, key)
        if (lock, False) in self._held or (lock, shared) in self._held:
            return
        verb = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        await self.raw.execute(f"SELECT {verb}($1)", lock)
        self._held.add((lock, shared))

    def day_number(self, column: str) -> str:
        # A float-to-integer CAST rounds on PostgreSQL; floor() first makes it "whole days elapsed".
        return f"CAST(floor(({column} - ?) / 86400) AS INTEGER)"

    def whole_number(self, column: str) -> str:
        return f"({column}) IS NOT NULL"  # BIGINT columns hold nothing but whole numbers

    def live_process(self, column: str) -> str:
        # Each process holds a session named after it (storage.postgres.Presence) for its whole life; the server
        # drops a killed process's session when its socket closes, so its leases are free at once.
        return f"EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = {column})"


class PgPresence:
    """`storage.conn.Presence` on PostgreSQL: one named, listening session."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @property
    def alive(self) -> bool:
        return not self._conn.is_closed()

    async def close(self) -> None:
        if not self._conn.is_closed():
            with suppress(Exception):
                await self._conn.close(timeout=5)


class PostgresBackend:
    """A pool of connections to one PostgreSQL database; each write is one READ COMMITTED transaction."""

    name = "postgresql"

    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        self.url = url
        self.path = None
        self._pool = pool
        self._closed = False

    @classmethod
    async def open(cls, url: str, *, min_size: int = POOL_MIN, max_size: int = POOL_MAX
                   ) -> tuple[PostgresBackend, int]:
        """Connect a pool and migrate; (backend, schema version).

        Raises:
            SchemaTooNew: the database was written by a newer version of the bot (left untouched).
        """
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max(min_size, max_size))
        try:
            async with pool.acquire() as conn:
                version = await migrate(conn)
        except BaseException:
            await pool.close()
            raise
        return cls(url, pool), version

    def describe(self) -> str:
        return redact(self.url)

    async def close(self) -> None:
        """Wait for the transactions in progress to end, then close every connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._pool.close()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[PgConn]:
        """One READ COMMITTED transaction, committed at the end, rolled back if the body raises or is cancelled.

        A connection that cannot be rolled back cleanly (say, cancelled mid-statement) goes back to the pool,
        which waits for the cancellation, rolls back and resets it, or closes it — and a closed connection's
        transaction is rolled back by the server. A task cancelled during COMMIT may still have committed.
        """
        async with self._pool.acquire() as raw:
            transaction = raw.transaction()
            await transaction.start()
            try:
                yield PgConn(raw)
            except BaseException:
                with suppress(Exception):
                    await to_the_end(transaction.rollback())
                raise
            await to_the_end(transaction.commit())

    async def notify(self, payload: str) -> None:
        """Wake every process listening (NOTIFY, delivered once the statement commits: at once here)."""
        await self._pool.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, payload)

    async def open_presence(self, name: str, on_message: Callable[[str], None]) -> PgPresence:
        """A dedicated session named `name` for this process's life, listening on the wake-up channel.

        Other processes read its liveness from pg_stat_activity (PgConn.live_process): when this process dies the
        server drops the session as soon as its socket closes, and its leases may be claimed at once.
        """
        conn = await asyncpg.connect(self.url, server_settings={"application_name": name})
        try:
            await conn.add_listener(NOTIFY_CHANNEL, lambda _c, _pid, _ch, payload: on_message(str(payload)))
        except BaseException:
            await conn.close()
            raise
        return PgPresence(conn)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[PgConn]:
        """A REPEATABLE READ, read-only transaction: several queries that see one consistent state."""
        async with self._pool.acquire() as raw, raw.transaction(isolation="repeatable_read", readonly=True):
            yield PgConn(raw)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return await self._pool.fetchrow(_sql(sql), *params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return list(await self._pool.fetch(_sql(sql), *params))


async def migrate(conn: asyncpg.Connection, *, target: int | None = None) -> int:
    """Bring the schema up to `target` (default: the latest), refusing a database newer than the code.

    The version lives in `schema_version` (one row per applied migration). Each migration runs in its own
    transaction under an advisory lock and re-reads the version first, so two processes starting at once
    cannot apply the same migration twice.

    Returns:
        The schema version after migrating.
    Raises:
        SchemaTooNew: the database's version is above what this code knows.
    """
    migrations = load_migrations("postgresql")
    supported = migrations[-1].version if migrations else 0
    goal = supported if target is None else target
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        version = await schema_version(conn)
    if version > supported:
        raise SchemaTooNew(version, supported)
    for migration in migrations:
        if migration.version > goal:
            break
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            version = await schema_version(conn)
            if version > supported:
                raise SchemaTooNew(version, supported)
            if migration.version <= version:
                continue
            await conn.execute(migration.sql)  # the whole file: PL/pgSQL bodies need no splitting
            await conn.execute("INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                               migration.version, migration.name)
        log.info("applied migration %s", migration.name)
    return await schema_version(conn)


async def schema_version(conn: asyncpg.Connection) -> int:
    """The highest migration applied (0 for an empty database)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    value: Any = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
    return int(value)
