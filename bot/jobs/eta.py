"""When a queued job may start: from how long this server's recent jobs ran and when its running ones began.

An estimate, and said to be one. The server's slots (its `server_jobs`, at most the bot's own limit) free up
when the running jobs end, each expected to take the median of the recent run times; the queue ahead of a job
then takes the slots in order, each for that median. Cached per server for `ttl` seconds, so a long queue
refreshing its places costs a couple of reads per server, not per job.
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from storage.db import Database
from storage.models import IN_SLOT, Job

RECENT = 20  # finished jobs the median is taken over
CACHE_TTL = 30.0


@dataclass(frozen=True, slots=True)
class _Snapshot:
    at: float
    typical: float | None  # median run time (submitted → delivered) of recent jobs, seconds
    started: tuple[float, ...]  # when the server's running jobs were submitted
    slots: int


class QueueEstimate:
    """Estimated start times of queued jobs, per server (`start_of`)."""

    def __init__(self, db: Database, clock: Callable[[], float], max_running: Callable[[], int],
                 ttl: float = CACHE_TTL) -> None:
        self.db, self.clock, self.max_running, self.ttl = db, clock, max_running, ttl
        self._cache: dict[int, _Snapshot] = {}

    async def start_of(self, job: Job, position: int) -> float | None:
        """The unix time the job at `position` (1 = next) in its server's queue may start; None without
        any finished job to judge by."""
        snap = await self._snapshot(job.guild_id)
        if snap.typical is None or position < 1:
            return None
        return estimate(snap.typical, snap.started, snap.slots, position, self.clock())

    async def _snapshot(self, guild_id: int) -> _Snapshot:
        now = self.clock()
        cached = self._cache.get(guild_id)
        if cached is not None and now - cached.at < self.ttl:
            return cached
        runs = await self.db.jobs.recent_run_seconds(guild_id, RECENT)
        active = await self.db.jobs.active_for_guild(guild_id)
        settings = await self.db.guilds.get(guild_id)
        started = tuple(j.submitted_at or j.updated_at for j in active if j.state in IN_SLOT)
        snap = _Snapshot(now, statistics.median(runs) if runs else None, started,
                         max(1, min(settings.max_jobs_per_guild, self.max_running())))
        if len(self._cache) > 10_000:  # bounded: servers that stopped asking are forgotten
            self._cache.clear()
        self._cache[guild_id] = snap
        return snap


def estimate(typical: float, started: tuple[float, ...], slots: int, position: int, now: float) -> float:
    """When the `position`-th waiting job starts if every job runs `typical` seconds: slots free up as the
    running jobs (`started` at those times) end, and each waiting job ahead takes the next free slot."""
    free_at = sorted(max(s + typical, now) for s in started)[:slots]
    free_at += [now] * (slots - len(free_at))
    heapq.heapify(free_at)
    start = now
    for _ in range(position):
        start = max(heapq.heappop(free_at), now)
        heapq.heappush(free_at, start + typical)
    return start
