"""`sora-bot db copy`: every row of an SQLite database into an empty PostgreSQL one, then proof it all arrived.

Rows go across as they are (same ids, same times, same JSON text), in one PostgreSQL transaction, so a copy
that fails leaves the target as empty as it found it. Ledger entries are replayed in their original order
through the target's own triggers: each one is checked against the rules again (a hold matches its job, a
settlement its hold, no balance below zero) and moves the target's balance cache, which must then equal the
source's balance for every member. Afterwards, every table's row count must match and `verify()` must find
nothing wrong on the target.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from storage.conn import Conn
from storage.db import Database
from storage.errors import StorageError

log = logging.getLogger(__name__)

# In the order the foreign keys and triggers need: jobs before the ledger that names them, balance rows
# before the ledger entries that move them. schema_version is the target's own (written by its migrations).
TABLES = ("guild_settings", "blocked_members", "refill_periods", "balances", "jobs", "ledger", "ledger_erasure")
BATCH = 2_000

# progress(table, rows copied so far in that table, rows in that table)
Progress = Callable[[str, int, int], None]


class CopyRefused(StorageError):
    """The copy did not start, or was rolled back: the target was not empty, or the copy did not add up."""


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What was copied: rows per table, and how many members' balances were checked against their ledger."""

    rows: dict[str, int] = field(default_factory=dict)
    balances_checked: int = 0


async def copy_database(source: Database, target: Database, progress: Progress | None = None) -> CopyReport:
    """Copy every table of `source` (SQLite) into `target` (PostgreSQL, empty), then check the result.

    Both must be open at the same schema version (Database.open migrates both to this code's latest).

    Raises:
        CopyRefused: the target holds data already, or a count or balance differs after the copy (then
            nothing was committed).
    """
    if source.backend != "sqlite" or target.backend != "postgresql":
        raise CopyRefused("db copy reads an SQLite database and writes a PostgreSQL one")
    progress = progress or (lambda table, done, total: None)
    counts = {table: await _count(source, table) for table in TABLES}
    async with source.snapshot() as read, target.write() as write:
        raw: Any = write.raw  # type: ignore[attr-defined]  # asyncpg's COPY protocol, for speed
        await raw.execute(f"LOCK TABLE {', '.join(TABLES)} IN EXCLUSIVE MODE")  # nobody writes meanwhile
        for table in TABLES:
            rows_there = await _count_in(write, table)
            if rows_there > 0:
                raise CopyRefused(f"the target database is not empty ({table} has {rows_there} rows); "
                                  "db copy only fills an empty database")
        source_balances = {
            (int(r["guild_id"]), int(r["user_id"])): (int(r["available"]), int(r["held"]))
            for r in await read.fetchall("SELECT guild_id, user_id, available, held FROM balances")
        }
        for table in TABLES:
            columns = [r["name"] for r in await read.fetchall(f"SELECT name FROM pragma_table_info('{table}')")]
            order = {"jobs": "seq", "ledger": "id"}.get(table, "rowid")
            select = ", ".join("0" if table == "balances" and c in ("available", "held") else c for c in columns)
            done = 0
            progress(table, 0, counts[table])
            last: Any = None
            while True:  # keyset pagination: bounded memory whatever the size
                where = f"WHERE {order} > ?" if last is not None else ""
                rows = await read.fetchall(
                    f"SELECT {order} AS _key, {select} FROM {table} {where} ORDER BY {order} LIMIT {BATCH}",
                    (last,) if last is not None else (),
                )
                if not rows:
                    break
                last = rows[-1]["_key"]
                # Balances go in at zero: replaying the ledger below brings each to its sum.
                await raw.copy_records_to_table(table, records=[tuple(r)[1:] for r in rows], columns=columns)
                done += len(rows)
                progress(table, done, counts[table])
        for table, column in (("jobs", "seq"), ("ledger", "id")):  # new rows continue after the copied ids
            await raw.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            )
        copied = {t: await _count_in(write, t) for t in TABLES}
        if copied != counts:
            raise CopyRefused(f"row counts differ after the copy: source {counts}, target {copied}")
        target_balances = {
            (int(r["guild_id"]), int(r["user_id"])): (int(r["available"]), int(r["held"]))
            for r in await write.fetchall("SELECT guild_id, user_id, available, held FROM balances")
        }
        if target_balances != source_balances:
            wrong = sorted(k for k in source_balances.keys() | target_balances.keys()
                           if source_balances.get(k) != target_balances.get(k))
            raise CopyRefused(f"{len(wrong)} balances differ from their ledger sums after the copy, "
                              f"e.g. guild/member {wrong[:3]}: the source's balance cache disagrees with its ledger")
    problems = await target.ledger.verify()
    if problems:  # committed already, but say so loudly: this is what the operator must not ignore
        raise CopyRefused("the copy finished but the audit found problems: " + "; ".join(problems[:5]))
    log.info("copied %s", copied)
    return CopyReport(rows=copied, balances_checked=len(target_balances))


async def _count_in(conn: Conn, table: str) -> int:
    row = await conn.fetchone(f"SELECT COUNT(*) AS n FROM {table}")
    return int(row["n"]) if row is not None else 0


async def _count(db: Database, table: str) -> int:
    row = await db.fetchone(f"SELECT COUNT(*) AS n FROM {table}")
    return int(row["n"]) if row is not None else 0
