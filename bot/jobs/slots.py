"""A first-come queue for upstream slots, with a bot-wide limit and one per server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
    blocking), but within a server jobs always start in the order they arrived.
    """

    def __init__(self, limit: int, on_change: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self._running: dict[str, int] = {}  # job id -> guild id
        self._waiters: list[_Waiter] = []
        self._on_change = on_change

    @property
    def running(self) -> int:
        return len(self._running)

    def running_in(self, guild_id: int) -> int:
        return sum(1 for g in self._running.values() if g == guild_id)

    def position(self, job_id: str) -> int | None:
        """1-based place of a waiting job in the queue, or None if it is not waiting."""
        for index, waiter in enumerate(self._waiters, start=1):
            if waiter.job_id == job_id:
                return index
        return None

    def holds(self, job_id: str) -> bool:
        return job_id in self._running

    async def acquire(self, job_id: str, guild_id: int, guild_limit: int) -> None:
        """Wait for a slot; cancelling the wait leaves the queue consistent."""
        if job_id in self._running:
            return
        if not self._waiters and self._fits(guild_id, guild_limit):
            self._running[job_id] = guild_id
            return
        waiter = _Waiter(job_id, guild_id, guild_limit, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._wake()  # a waiter ahead may be held back only by its own server's limit
        self._changed()
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif job_id in self._running:  # granted just as we were cancelled: give it back
                self.release(job_id)
            self._changed()
            raise

    def occupy(self, job_id: str, guild_id: int) -> None:
        """Give a slot without queueing: a job that was already running upstream before a restart."""
        self._running[job_id] = guild_id

    def release(self, job_id: str) -> None:
        """Free a job's slot (no-op if it had none) and start whoever may go next."""
        if self._running.pop(job_id, None) is not None:
            self._wake()

    def _fits(self, guild_id: int, guild_limit: int) -> bool:
        return len(self._running) < self.limit and self.running_in(guild_id) < max(guild_limit, 1)

    def _wake(self) -> None:
        started = False
        for waiter in list(self._waiters):
            if len(self._running) >= self.limit:
                break
            if waiter.future.done():
                self._waiters.remove(waiter)
                continue
            if self._fits(waiter.guild_id, waiter.guild_limit):
                self._waiters.remove(waiter)
                self._running[waiter.job_id] = waiter.guild_id
                waiter.future.set_result(None)
                started = True
        if started:
            self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()
