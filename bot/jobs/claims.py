"""This process's leases on jobs: presence, heartbeat, claims within its fair share, renewals, lost leases, wake-ups.

The database owns the jobs (storage.leases). This loop keeps the runner's share of them: every pass it counts
the live processes and the unfinished jobs, claims free jobs (oldest first) up to its fair share, gives back
queued ones it holds beyond that share (so an idle process that started first does not keep everything), and
every lease/3 renews all its leases in one statement — a job whose renewal fails is lost, and the runner
cancels its task at once. It also knows, by its own clock, until when each lease is surely still ours: steps
that cannot be taken back check that first, and a paused process that wakes past its leases stays quiet until
a renewal or a fenced touch says the jobs are still its own.

Wake-ups between processes are PostgreSQL NOTIFYs on one channel, heard on the presence session (whose name is
this process's owner name, and whose end tells the others this process died): `poke:<job>[:<task>]` (a verified
callback), `abort:<job>` (a Cancel or an erasure), `new` (a job nobody local claimed), `slot` (a slot freed).
Polling every few seconds is the fallback; SQLite has no notifications and one process: the same code.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping

from bot.config import ConfigError
from storage.conn import Presence
from storage.db import Database
from storage.errors import DatabaseInUse
from storage.leases import MAX_OWNER, Census, Claimed, Lease

log = logging.getLogger(__name__)

REBALANCE_SLACK = 1  # jobs a process may hold beyond its share before it gives queued ones back


def owner_name(process: str | None = None) -> str:
    """A name for this run of this process: the operator's (SORA_PROCESS_NAME) or host:pid, plus a random tag, so
    a restarted process never mistakes an earlier run's leases for its own. ASCII, at most 63 bytes."""
    base = process or os.environ.get("SORA_PROCESS_NAME") or f"{socket.gethostname()}:{os.getpid()}"
    base = base.encode("ascii", "replace").decode().replace("?", "_")
    tag = secrets.token_hex(4)
    return f"{base[:MAX_OWNER - len(tag) - 1]}#{tag}"


def hold_database(db: Database) -> Callable[[], None]:
    """The single-process guard of an SQLite database (one line for the operator if another process has it).

    Raises:
        ConfigError: another process drives this SQLite file's jobs.
    """
    try:
        return db.hold_single_process()
    except DatabaseInUse as exc:
        raise ConfigError("DATABASE_PATH", str(exc)) from None


class Claims:
    """The claim/renew loop of one runner, and its view of which leases are surely still valid."""

    def __init__(self, db: Database, *, owner: str, lease_seconds: float, interval: float,
                 clock: Callable[[], float], held: Callable[[], Mapping[str, Lease]],
                 on_claimed: Callable[[Claimed], None], on_lost: Callable[[str], None],
                 on_message: Callable[[str], None], give_back: Callable[[int], list[Lease]]) -> None:
        self.db, self.owner, self.lease_seconds, self.clock = db, owner, lease_seconds, clock
        self.interval = min(interval, lease_seconds / 3)
        self._held, self._on_claimed, self._on_lost = held, on_claimed, on_lost
        self._on_message, self._give_back = on_message, give_back
        self._valid_until: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._presence: Presence | None = None
        self._release_guard: Callable[[], None] | None = None
        self._next_renewal = float("-inf")
        self.census = Census(1, 0)
        self.running = False  # True between open() and close(): leases are renewed and judged by the clock
        self.claimed_total = 0  # jobs claimed by this process's loop (benchmarks)
        self.passes = 0

    # ---- life ------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Take the SQLite guard, enter the processes table, open the presence session (PostgreSQL)."""
        self._release_guard = hold_database(self.db)
        try:
            await self.db.leases.register(self.owner)
            self._presence = await self.db.open_presence(self.owner, self._heard)
        except BaseException:
            self._release_guard()
            raise
        self.running = True
        log.info("process registered for jobs", extra={"owner": self.owner, "lease": self.lease_seconds})

    async def close(self) -> None:
        """Give every lease back (others may claim them at once), leave, drop the guard."""
        if not self.running:
            return
        self.running = False
        try:
            released = await self.db.leases.unregister(self.owner)
            if released:
                log.info("gave back leases on the way out", extra={"count": released})
        except Exception:  # the database is gone or down: nothing is lost, the leases simply run out
            log.warning("giving back leases failed; they expire on their own", exc_info=True)
        finally:
            if self._presence is not None:
                await self._presence.close()
            if self._release_guard is not None:
                self._release_guard()

    def wake(self) -> None:
        """Run a claim pass now (a new job was announced, or a job was given back)."""
        self._wake.set()

    async def run(self) -> None:
        """Claim passes every `interval` or when woken, for the life of the runner; failures are retried."""
        while True:
            try:
                await self.pass_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is down (/healthz says so): our leases run out, others take over
                log.warning("claim pass failed; trying again", exc_info=True)
            try:
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()

    # ---- one pass --------------------------------------------------------------------------------

    async def pass_once(self) -> int:
        """Renew when due, count, claim up to the fair share or give back the excess; how many were claimed."""
        self.passes += 1
        await self._keep_presence()
        if self.clock() >= self._next_renewal:
            await self.renew()
        self.census = await self.db.leases.census(self.lease_seconds)
        room = self.census.share - len(self._held())
        if room < -REBALANCE_SLACK:
            for lease in self._give_back(-room):
                if await self.db.leases.release(lease):
                    self._on_lost(lease.job_id)
                    await self.db.notify("new")
            return 0
        if room <= 0 or not await self.db.leases.claimable():
            return 0
        return await self.claim(room)

    async def claim(self, limit: int, job_id: str | None = None) -> int:
        """Claim up to `limit` free jobs (or that one) and hand each to the runner."""
        async with self._lock:  # one claim at a time here: a launch and a pass never both claim one job
            started = self.clock()
            claimed = await self.db.leases.claim(self.owner, self.lease_seconds, limit, job_id=job_id)
        for item in claimed:
            self._valid_until[item.job.id] = started + self.lease_seconds
            self._on_claimed(item)
        if claimed and job_id is None:
            self.claimed_total += len(claimed)
            log.info("claimed jobs", extra={"count": len(claimed), "share": self.census.share})
        return len(claimed)

    async def renew(self) -> None:
        """Extend every lease we hold in one statement; the ones that failed are lost (their tasks stop)."""
        held = {job_id: lease.fence for job_id, lease in self._held().items()}
        started = self.clock()
        self._next_renewal = started + self.lease_seconds / 3
        await self.db.leases.heartbeat(self.owner)
        kept = await self.db.leases.renew(self.owner, self.lease_seconds, held)
        for job_id in held:
            if job_id in kept:
                self._valid_until[job_id] = started + self.lease_seconds
            else:
                log.warning("lease lost: another process drives this job now; stopping here",
                            extra={"job": job_id, "owner": self.owner})
                self._valid_until.pop(job_id, None)
                self._on_lost(job_id)

    async def touch(self, lease: Lease) -> None:
        """A fenced renewal of one lease, right before a step that cannot be taken back (raises LeaseLost)."""
        started = self.clock()
        await self.db.leases.touch(lease, self.lease_seconds)
        self._valid_until[lease.job_id] = started + self.lease_seconds

    def valid(self, job_id: str) -> bool:
        """Whether this process surely still holds the job by its own clock (always, without the loop running)."""
        return not self.running or self.clock() < self._valid_until.get(job_id, float("-inf"))

    def forget(self, job_id: str) -> None:
        self._valid_until.pop(job_id, None)

    async def _keep_presence(self) -> None:
        """Reopen the presence session if it dropped; until a renewal, our leases are not judged valid."""
        if self._presence is None or self._presence.alive:
            return
        log.warning("presence session lost; reconnecting (other processes may take our jobs meanwhile)",
                    extra={"owner": self.owner})
        self._valid_until.clear()
        self._next_renewal = float("-inf")
        self._presence = await self.db.open_presence(self.owner, self._heard)

    def _heard(self, payload: str) -> None:
        try:
            self._on_message(payload)
        except Exception:
            log.exception("wake-up handling failed", extra={"payload": payload[:80]})
