"""A first-come queue for upstream slots, with a bot-wide limit and one per server."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Waiter:
    job_id: str
    guild_id: int
    guild_limit: int
    future: asyncio.Future[None] = field(repr=False)


class SlotPool:
    """Hand out running slots in arrival order, skipping only waiters whose server is at its own limit.

    A waiter whose server is full does not block another server's job behind it (no head-of-line
    blocking), but within a server jobs always start in the order they arrived. Every operation is
    O(1) except a release, which scans the queue once, so thousands of queued jobs stay cheap.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running: dict[str, int] = {}  # job id -> guild id
        self._per_guild: Counter[int] = Counter()
        self._waiters: list[_Waiter] = []
        self._waiting_per_guild: Counter[int] = Counter()
        self._positions: dict[str, int] | None = None  # cache, rebuilt after the queue changes

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def running_in(self, guild_id: int) -> int:
        return self._per_guild[guild_id]

    def position(self, job_id: str) -> int | None:
        """1-based place of a waiting job in the queue, or None if it is not waiting."""
        if self._positions is None:
            self._positions = {w.job_id: i for i, w in enumerate(self._waiters, start=1)}
        return self._positions.get(job_id)

    def holds(self, job_id: str) -> bool:
        return job_id in self._running

    async def acquire(self, job_id: str, guild_id: int, guild_limit: int) -> None:
        """Wait for a slot; cancelling the wait leaves the queue consistent."""
        if job_id in self._running:
            return
        # Anyone already waiting is held back by a limit this job would also hit, unless it is their own
        # server's limit: so a job that fits now may start now without jumping its own server's queue.
        if self._fits(guild_id, guild_limit) and not self._waiting_per_guild[guild_id]:
            self.occupy(job_id, guild_id)
            return
        waiter = _Waiter(job_id, guild_id, guild_limit, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._waiting_per_guild[guild_id] += 1
        self._positions = None
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                self._waiting_per_guild[guild_id] -= 1
                self._positions = None
            elif job_id in self._running:  # granted just as we were cancelled: give it back
                self.release(job_id)
            raise

    def occupy(self, job_id: str, guild_id: int) -> None:
        """Give a slot without queueing: a job that was already running upstream before a restart."""
        if job_id not in self._running:
            self._running[job_id] = guild_id
            self._per_guild[guild_id] += 1

    def release(self, job_id: str) -> None:
        """Free a job's slot (no-op if it had none) and start whoever may go next."""
        guild_id = self._running.pop(job_id, None)
        if guild_id is None:
            return
        self._per_guild[guild_id] -= 1
        if not self._per_guild[guild_id]:
            del self._per_guild[guild_id]
        self._wake()

    def _fits(self, guild_id: int, guild_limit: int) -> bool:
        return len(self._running) < self.limit and self._per_guild[guild_id] < max(guild_limit, 1)

    def _wake(self) -> None:
        kept: list[_Waiter] = []
        for index, waiter in enumerate(self._waiters):
            if len(self._running) >= self.limit:
                kept.extend(self._waiters[index:])
                break
            if waiter.future.done():
                self._waiting_per_guild[waiter.guild_id] -= 1
                continue
            if self._fits(waiter.guild_id, waiter.guild_limit):
                self._waiting_per_guild[waiter.guild_id] -= 1
                self.occupy(waiter.job_id, waiter.guild_id)
                waiter.future.set_result(None)
            else:
                kept.append(waiter)
        if len(kept) != len(self._waiters):
            self._waiters = kept
            self._positions = None
