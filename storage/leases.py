"""Jobs owned by the database: claims with a lease and a fencing number, renewals, slot grants, processes.

Any number of processes share the jobs of one database. A process *claims* an unfinished job whose lease is
free (no owner, lease past, or its owner's process gone), which sets `owner`, `lease_expires_at` and
`fence = fence + 1` under the row's lock (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so concurrent claimers skip
each other's rows instead of queueing behind them). While it drives the job it renews the lease; every write
it makes about the job carries its `Lease` and is refused with `LeaseLost` once owner or fence moved (checked
under the row lock, so a claim and a fenced write never interleave). The fence, not the clock, is the truth:
an expired lease that nobody has claimed again is still the holder's, since any new claim moves the fence.

A job moves from `queued` to `submitting` only through `start_queued`, one grant at a time bot-wide (the
SLOTS lock), counting MAX_RUNNING_JOBS and each server's limit in the database, in FIFO order across processes.

On SQLite the same code runs with one process (storage.guard keeps out a second one): its `processes` table
holds one row, so a lease of an earlier run of the bot is free at once.
"""

from __future__ import annotations

import contextvars
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from storage.conn import SLOTS, Conn, fetchall, fetchone
from storage.errors import LeaseLost
from storage.guilds import GuildSettings
from storage.models import IN_SLOT_SQL, UNFINISHED_SQL, Job, job_from_row

if TYPE_CHECKING:
    from storage.db import Database

log = logging.getLogger(__name__)

MAX_OWNER = 63  # PostgreSQL's application_name holds 63 bytes: the presence session is named after the owner
_CHUNK = 500  # ids per IN (…) list: well under both databases' parameter limits
_LOCAL: set[str] = set()  # owners registered by this process (several runners may share one, as tests do)
DEAD_AFTER = 24 * 3600.0  # a process silent this long leaves the processes table (it only ever counts live ones)
_DEFAULT_GUILD_LIMIT = GuildSettings(guild_id=0).max_jobs_per_guild


@dataclass(frozen=True, slots=True)
class Lease:
    """What a process holds of one job: the right to write about it while owner and fence still match the row."""

    job_id: str
    owner: str
    fence: int


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job this process just claimed; `previous_owner` drove it before (None: nobody had claimed it)."""

    job: Job
    previous_owner: str | None

    @property
    def lease(self) -> Lease:
        assert self.job.owner is not None
        return Lease(self.job.id, self.job.owner, self.job.fence)


@dataclass(frozen=True, slots=True)
class Census:
    """How much work there is and how many processes share it: each one's fair share."""

    live_processes: int
    unfinished: int

    @property
    def share(self) -> int:
        return math.ceil(self.unfinished / max(1, self.live_processes))


@dataclass(frozen=True, slots=True)
class Grants:
    """The outcome of one slot pass: jobs of ours that may start now, and every queued job in FIFO order."""

    started: list[str]
    queue: list[str]


#: The job the current task drives, and its runner's live leases (job id → lease). The runner sets it in each
#: job's task, so writes made on its behalf by code that carries no lease (the notifier recording a status
#: message) are fenced all the same.
DRIVING: contextvars.ContextVar[tuple[str, Mapping[str, Lease]] | None] = contextvars.ContextVar(
    "sora_driving", default=None)


def lease_for(job_id: str, lease: Lease | None) -> Lease | None:
    """The lease a write about `job_id` must carry: the one given, else the current task's if it drives that job.

    Raises:
        LeaseLost: the current task drives this job but its runner no longer holds a lease on it.
    """
    if lease is not None:
        return lease
    driving = DRIVING.get()
    if driving is None or driving[0] != job_id:
        return None
    held = driving[1].get(job_id)
    if held is None:
        raise LeaseLost(job_id, "?", -1)
    return held


def check_lease(job: Job, lease: Lease | None) -> None:
    """Refuse a write about `job` (read under its row lock) unless `lease` still names its owner and fence.

    Raises:
        LeaseLost: another process claimed the job since (or the lease is not this row's).
    """
    if lease is not None and (job.owner != lease.owner or job.fence != lease.fence):
        raise LeaseLost(lease.job_id, lease.owner, lease.fence)


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _free(conn: Conn) -> str:
    """SQL: the row's lease may be claimed (`?` = now)."""
    return (f"(owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at < ? "
            f"OR NOT {conn.live_process('owner')})")


class Leases:
    """Claims, renewals, slot grants and the processes table (`db.leases`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # ---- processes -----------------------------------------------------------------------------

    async def register(self, owner: str) -> None:
        """Enter this process in `processes`. On SQLite, where storage.guard lets one process at a time drive
        jobs, rows of other processes are earlier runs, dead: they go, and their leases are free at once."""
        if not owner or len(owner.encode()) > MAX_OWNER or not owner.isascii():
            raise ValueError(f"a process name is 1-{MAX_OWNER} ASCII characters")
        _LOCAL.add(owner)
        async with self._db.write() as conn:
            now = self._db.now()
            if not self._db.shared:  # one process per SQLite file (storage.guard): any row not ours is a dead run's
                mine = sorted(_LOCAL)
                await conn.execute(f"DELETE FROM processes WHERE name NOT IN ({_marks(len(mine))})", mine)
            await conn.execute(
                "INSERT INTO processes (name, started_at, heartbeat_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET heartbeat_at = excluded.heartbeat_at", (owner, now, now))

    async def heartbeat(self, owner: str) -> None:
        """Say this process is alive (re-entering it if it was forgotten) and forget processes long silent."""
        async with self._db.write() as conn:
            now = self._db.now()
            updated = await conn.execute("UPDATE processes SET heartbeat_at = ? WHERE name = ?", (now, owner))
            if not updated.rowcount:
                await conn.execute("INSERT INTO processes (name, started_at, heartbeat_at) VALUES (?, ?, ?)",
                                   (owner, now, now))
            await conn.execute("DELETE FROM processes WHERE heartbeat_at < ?", (now - DEAD_AFTER,))

    async def census(self, lease_seconds: float) -> Census:
        """How many processes are alive (a heartbeat within a lease, and a live session) and how much work is left."""
        async with self._db.snapshot() as conn:
            live = await fetchone(conn, "SELECT COUNT(*) AS n FROM processes WHERE heartbeat_at >= ? AND "
                                  + conn.live_process("name"), (self._db.now() - lease_seconds,))
            work = await fetchone(conn, f"SELECT COUNT(*) AS n FROM jobs WHERE state IN ({UNFINISHED_SQL})")
        return Census(max(1, int(live["n"]) if live else 1), int(work["n"]) if work else 0)

    async def unregister(self, owner: str) -> int:
        """Leave: release every lease this process holds (others may claim them at once); how many."""
        _LOCAL.discard(owner)
        async with self._db.write() as conn:
            await conn.execute("DELETE FROM processes WHERE name = ?", (owner,))
            result = await conn.execute(
                f"UPDATE jobs SET owner = NULL, lease_expires_at = NULL WHERE owner = ? AND state IN ({UNFINISHED_SQL})",
                (owner,))
        return result.rowcount

    # ---- claims ----------------------------------------------------------------------------------

    async def claimable(self) -> int:
        """How many unfinished jobs could be claimed now (a read: lets an idle process skip a write)."""
        async with self._db.snapshot() as conn:
            row = await fetchone(conn, f"SELECT COUNT(*) AS n FROM jobs WHERE state IN ({UNFINISHED_SQL}) AND "
                                 + _free(conn), (self._db.now(),))
        return int(row["n"]) if row else 0

    async def claim(self, owner: str, lease_seconds: float, limit: int, *, job_id: str | None = None
                    ) -> list[Claimed]:
        """Claim up to `limit` unfinished jobs whose lease is free, oldest first (or only `job_id`).

        Each claimed row gets this owner, a lease of `lease_seconds` and its fence + 1, in one transaction; rows
        another claimer holds locked are skipped, so no job is ever handed to two owners.
        """
        if limit <= 0:
            return []
        async with self._db.write() as conn:
            now = self._db.now()
            only = " AND id = ?" if job_id is not None else ""
            params = (now, job_id, limit) if job_id is not None else (now, limit)
            rows = await fetchall(
                conn, f"SELECT id, owner FROM jobs WHERE state IN ({UNFINISHED_SQL}) AND {_free(conn)}{only} "
                f"ORDER BY seq LIMIT ?{conn.skip_locked}", params)
            if not rows:
                return []
            before = {str(r["id"]): r["owner"] for r in rows}
            claimed: list[Job] = []
            for chunk in _chunks(list(before)):
                claimed += [job_from_row(r) for r in await fetchall(
                    conn, f"UPDATE jobs SET owner = ?, lease_expires_at = ?, fence = fence + 1 "
                    f"WHERE id IN ({_marks(len(chunk))}) RETURNING *", (owner, now + lease_seconds, *chunk))]
        claimed.sort(key=lambda job: job.seq)
        return [Claimed(job, before[job.id]) for job in claimed]

    async def renew(self, owner: str, lease_seconds: float, held: Mapping[str, int]) -> set[str]:
        """Extend the leases of the jobs this process drives (`held`: job id → fence); the ids still held.

        A job whose owner or fence moved is lost: the caller stops driving it at once and writes nothing more.
        """
        kept: set[str] = set()
        if not held:
            return kept
        async with self._db.write() as conn:
            expires = self._db.now() + lease_seconds
            for chunk in _chunks(sorted(held)):
                # Row locks in id order first: two processes renewing (or one renewing while another takes over)
                # then always meet in the same order, so they queue instead of deadlocking.
                await fetchall(conn, f"SELECT id FROM jobs WHERE owner = ? AND id IN ({_marks(len(chunk))}) "
                               f"ORDER BY id{conn.for_update}", (owner, *chunk))
                rows = await fetchall(
                    conn, f"UPDATE jobs SET lease_expires_at = ? WHERE owner = ? AND id IN ({_marks(len(chunk))}) "
                    "RETURNING id, fence", (expires, owner, *chunk))
                kept.update(str(r["id"]) for r in rows if held.get(str(r["id"])) == int(r["fence"]))
        return kept

    async def touch(self, lease: Lease, lease_seconds: float) -> None:
        """Renew one lease, or raise: the check right before a step that cannot be taken back (a create, a post).

        Raises:
            LeaseLost: another process claimed the job, or its row is gone.
        """
        async with self._db.write() as conn:
            result = await conn.execute(
                "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND owner = ? AND fence = ?",
                (self._db.now() + lease_seconds, lease.job_id, lease.owner, lease.fence))
        if not result.rowcount:
            raise LeaseLost(lease.job_id, lease.owner, lease.fence)

    async def release(self, lease: Lease) -> bool:
        """Give one job back (to be claimed by whoever has room); False if it was no longer ours."""
        async with self._db.write() as conn:
            result = await conn.execute(
                "UPDATE jobs SET owner = NULL, lease_expires_at = NULL WHERE id = ? AND owner = ? AND fence = ?",
                (lease.job_id, lease.owner, lease.fence))
        return bool(result.rowcount)

    # ---- slots -----------------------------------------------------------------------------------

    async def start_queued(self, owner: str, max_running: int, waiting: Mapping[str, int]) -> Grants:
        """Move the queued jobs of ours that may run now to `submitting`: one grant at a time, bot-wide.

        The slots are handed out in acceptance order (`seq`) to every runnable queued job of every process, as
        if all were waiting in one line: a job whose server is at its limit is skipped (it does not block other
        servers), anyone else's job ahead of ours keeps its slot for its own process, and only our `waiting`
        jobs (id → fence) still leased to us move. Counting and moving happen under the SLOTS lock, so two
        processes never both fill the last slot.
        """
        async with self._db.write() as conn:
            await conn.lock(SLOTS, 0)
            running = {int(r["guild_id"]): int(r["n"]) for r in await fetchall(
                conn, f"SELECT guild_id, COUNT(*) AS n FROM jobs WHERE state IN ({IN_SLOT_SQL}) GROUP BY guild_id")}
            queued = await fetchall(conn, "SELECT id, guild_id, owner, fence FROM jobs WHERE state = 'queued' "
                                    "ORDER BY seq")
            limits = await self._limits(conn, {int(r["guild_id"]) for r in queued})
            total = sum(running.values())
            started: list[str] = []
            for row in queued:
                if total >= max_running:
                    break
                guild = int(row["guild_id"])
                if running.get(guild, 0) >= limits.get(guild, _DEFAULT_GUILD_LIMIT):
                    continue
                total += 1
                running[guild] = running.get(guild, 0) + 1
                job_id = str(row["id"])
                if row["owner"] == owner and waiting.get(job_id) == int(row["fence"]):
                    started.append(job_id)
            now = self._db.now()
            moved: list[str] = []
            for job_id in started:  # fenced: a claim by another process since the read above wins
                result = await conn.execute(
                    "UPDATE jobs SET state = 'submitting', updated_at = ? WHERE id = ? AND state = 'queued' "
                    "AND owner = ? AND fence = ?", (now, job_id, owner, waiting[job_id]))
                if result.rowcount:
                    moved.append(job_id)
        gone = set(moved)
        return Grants(moved, [str(r["id"]) for r in queued if str(r["id"]) not in gone])

    async def queue(self) -> list[str]:
        """Every queued job's id in FIFO order, bot-wide: the places members are shown."""
        rows = await self._db.fetchall("SELECT id FROM jobs WHERE state = 'queued' ORDER BY seq")
        return [str(r["id"]) for r in rows]

    @staticmethod
    async def _limits(conn: Conn, guilds: set[int]) -> dict[int, int]:
        found: dict[int, int] = {}
        ids = sorted(guilds)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            for row in await fetchall(conn, "SELECT guild_id, max_jobs_per_guild FROM guild_settings WHERE guild_id "
                                      f"IN ({_marks(len(chunk))})", chunk):
                found[int(row["guild_id"])] = int(row["max_jobs_per_guild"])
        return found


__all__ = ["DRIVING", "Census", "Claimed", "Grants", "Lease", "Leases", "check_lease", "lease_for"]
