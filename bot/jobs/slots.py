"""This process's side of the database's slot grants: which of its jobs wait, their queue places, one pass at once.

The slots themselves — MAX_RUNNING_JOBS bot-wide, each server's own limit, first come first served across every
process — are counted and granted in the database (`storage.leases.Leases.start_queued`). What stays here is a
thin local cache: the events the waiting jobs sleep on, the last FIFO order read (members' queue places), and
the coalescing of passes, so a thousand waiting jobs cost one grant transaction per change, not one each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from storage.db import Database

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Waiter:
    """One of our queued jobs waiting here: `event` is set after every pass (its place may have moved) and when
    it is `done` — granted a slot, or gone from the queue some other way (cancelled, erased)."""

    fence: int
    done: bool = False
    event: asyncio.Event = field(default_factory=asyncio.Event)


class Slots:
    """Grant passes for this process's queued jobs, run when something changed (or now and then, as a fallback)."""

    def __init__(self, db: Database, *, owner: Callable[[], str], max_running: Callable[[], int],
                 clock: Callable[[], float], min_interval: float) -> None:
        self.db, self._owner, self._max_running, self._clock = db, owner, max_running, clock
        self.min_interval = min_interval  # periodic (nothing known to have changed) passes at most this often
        self._waiting: dict[str, Waiter] = {}
        self._places: dict[str, int] = {}
        self._pass: asyncio.Task[None] | None = None
        self._again = False
        self._last = float("-inf")
        self.passes = 0  # grant transactions run (benchmarks)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def position(self, job_id: str) -> int | None:
        """1-based place of a queued job in the bot-wide queue, as last read from the database (None if unknown)."""
        return self._places.get(job_id)

    def set_places(self, queue: list[str]) -> None:
        """Remember the FIFO order of every queued job (from a grant pass, or a plain read when none runs)."""
        self._places = {job_id: place for place, job_id in enumerate(queue, start=1)}

    def wait(self, job_id: str, fence: int) -> Waiter:
        """Enter a job of ours (under the lease with this fence) in the local waiting list and ask for a pass;
        once `done`, the waiter re-reads its row to learn whether it was granted a slot or left the queue."""
        entry = self._waiting.get(job_id)
        if entry is None or entry.fence != fence:
            entry = self._waiting[job_id] = Waiter(fence)
        self.kick()
        return entry

    def is_waiting(self, job_id: str) -> bool:
        entry = self._waiting.get(job_id)
        return entry is not None and not entry.done

    def forget(self, job_id: str) -> None:
        self._waiting.pop(job_id, None)

    def kick(self, *, changed: bool = True) -> None:
        """Run a grant pass soon. `changed=False` (a periodic fallback) skips it if one ran within min_interval."""
        if not self._waiting:
            return
        if not changed and self._clock() - self._last < self.min_interval:
            return
        if self._pass is not None and not self._pass.done():
            self._again = True
            return
        self._pass = asyncio.create_task(self._run(), name="slot-pass")

    async def stop(self) -> None:
        if self._pass is not None:
            self._pass.cancel()
            await asyncio.gather(self._pass, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._again = False
            self._last = self._clock()
            waiting = {job_id: entry.fence for job_id, entry in self._waiting.items() if not entry.done}
            if not waiting:
                return
            try:
                grants = await self.db.leases.start_queued(self._owner(), self._max_running(), waiting)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is down (/healthz says so); the waiting jobs ask again
                log.warning("slot pass failed; the waiting jobs will ask again", exc_info=True)
                return
            self.passes += 1
            self.set_places(grants.queue)
            queued = set(grants.queue)
            started = set(grants.started)
            for job_id, entry in self._waiting.items():
                if job_id in waiting and (job_id in started or job_id not in queued):
                    entry.done = True  # started, or no longer queued at all (cancelled or erased meanwhile)
                entry.event.set()
            if not self._again:
                return
