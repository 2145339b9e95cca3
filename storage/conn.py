"""The one connection interface the repositories write SQL against, whichever database is underneath.

Repositories write portable SQL with `?` placeholders (SQLite's and the DB-API's style); the PostgreSQL
backend translates them to `$1, $2 …`. The few things the two databases do differently are behind this
interface, so a repository never asks which backend it runs on:

- `for_update`: the row-lock suffix for a read that precedes a write (`" FOR UPDATE"` on PostgreSQL, `""`
  on SQLite, where one writer at a time already excludes everyone else).
- `lock(name, key)`: a transaction-scoped lock on a named scope such as one guild's admissions (an advisory
  lock on PostgreSQL; nothing on SQLite, for the same reason).
- `day_number(column)`: whole UTC days between `column` and a `?` parameter (integer casts round on
  PostgreSQL and truncate on SQLite).
- `whole_number(column)`: whether a value is an integer (`typeof()` on SQLite, where any column can hold
  any type; always true for PostgreSQL's BIGINT columns).
- `skip_locked`, `live_process(column)`: what job claims need (storage.leases): skip rows another claim has
  locked; whether the process owning a lease is still alive.

Everything else — `ON CONFLICT … DO NOTHING/UPDATE`, `RETURNING`, `COUNT(*) FILTER`, partial indexes — is
written once and means the same on both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

# sqlite3.Row or asyncpg.Record: both index by column name and by position, and dict(row) works on both.
Row = Any
Params = Sequence[Any]
T = TypeVar("T")

# Scopes of lock(); a name is part of the lock key, so scopes never block each other.
GUILD = "guild"  # shared by every write to a guild's members and jobs, exclusive for erasing them
ADMISSION = "admission"  # one admission at a time per guild: quotas that span members (daily budget)
SETTINGS = "settings"  # one settings change at a time per guild (read, merge, write)
SLOTS = "slots"  # one slot grant at a time, bot-wide: MAX_RUNNING_JOBS and the per-server limits, in FIFO order


@dataclass(frozen=True, slots=True)
class Result:
    """What a statement changed: `rowcount` rows inserted, updated or deleted."""

    rowcount: int


class Conn(Protocol):
    """A connection inside a transaction the caller holds (from `db.write()` or `db.snapshot()`)."""

    backend: str  # "sqlite" | "postgresql"
    for_update: str
    skip_locked: str  # " FOR UPDATE SKIP LOCKED" where several processes claim at once, else ""

    async def execute(self, sql: str, params: Params = ()) -> Result:
        """Run one statement; raises `ConstraintViolation` when the schema refuses it."""
        ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """Run one query and return its first row (None if it returned nothing)."""
        ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Run one query and return all its rows."""
        ...

    async def lock(self, name: str, key: int, *, shared: bool = False) -> None:
        """Hold the named lock until this transaction ends (a no-op where writes are already serial)."""
        ...

    def day_number(self, column: str) -> str:
        """SQL for the whole number of days from a `?` parameter (a UNIX time) to `column`, rounded down."""
        ...

    def whole_number(self, column: str) -> str:
        """SQL that is true when `column` holds an integer (SQLite lets any column hold any type)."""
        ...

    def live_process(self, column: str) -> str:
        """SQL that is true when the process named by `column` is alive: it holds a session of this database
        named after it (PostgreSQL; a kill -9 closes it at once), or a row in `processes` (SQLite, where the
        single-process guard lets only one process register at a time)."""
        ...


class Presence(Protocol):
    """A process's standing presence in the database: how others see it alive, and where wake-ups reach it."""

    @property
    def alive(self) -> bool:
        """False once the session is gone (then others may already have taken this process's jobs)."""
        ...

    async def close(self) -> None:
        """Leave (idempotent)."""
        ...


class NoPresence:
    """SQLite's presence: one process per file, nothing to tell anyone, no notifications."""

    alive = True

    async def close(self) -> None:
        return None


def translate_placeholders(sql: str) -> str:
    """Rewrite `?` placeholders as `$1, $2 …`, leaving string literals, quoted names and comments alone."""
    out: list[str] = []
    number = 0
    i = 0
    length = len(sql)
    while i < length:
        char = sql[i]
        if char in ("'", '"'):
            end = sql.find(char, i + 1)
            while end != -1 and end + 1 < length and sql[end + 1] == char:  # '' or "" escapes
                end = sql.find(char, end + 2)
            end = length - 1 if end == -1 else end
            out.append(sql[i:end + 1])
            i = end + 1
        elif char == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = length if end == -1 else end
            out.append(sql[i:end])
            i = end
        elif char == "?":
            number += 1
            out.append(f"${number}")
            i += 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


async def fetchone(conn: Conn, sql: str, params: Params = ()) -> Row | None:
    """Run one query on `conn` (inside a transaction the caller holds) and return its first row."""
    return await conn.fetchone(sql, params)


async def fetchall(conn: Conn, sql: str, params: Params = ()) -> list[Row]:
    """Run one query on `conn` (inside a transaction the caller holds) and return all its rows."""
    return await conn.fetchall(sql, params)


async def to_the_end(aw: Awaitable[T]) -> T:
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
