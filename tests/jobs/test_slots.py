"""The slot queue: first come first served, per-server limits, no head-of-line blocking, cancel-safe."""

from __future__ import annotations

import asyncio

from bot.jobs.slots import SlotPool


async def test_fifo_within_limits() -> None:
    pool = SlotPool(limit=2)
    await pool.acquire("a", 1, 5)
    await pool.acquire("b", 1, 5)
    started: list[str] = []

    async def wait(job: str) -> None:
        await pool.acquire(job, 1, 5)
        started.append(job)

    tasks = [asyncio.create_task(wait(j)) for j in ("c", "d", "e")]
    await asyncio.sleep(0)
    assert [pool.position(j) for j in ("c", "d", "e")] == [1, 2, 3]
    pool.release("a")
    await asyncio.wait_for(tasks[0], 1)
    assert started == ["c"]
    assert pool.position("d") == 1
    pool.release("b")
    pool.release("c")
    await asyncio.wait_for(asyncio.gather(*tasks[1:]), 1)
    assert started == ["c", "d", "e"]


async def test_full_server_does_not_block_another() -> None:
    pool = SlotPool(limit=10)
    await pool.acquire("a1", guild_id=1, guild_limit=1)
    blocked = asyncio.create_task(pool.acquire("a2", 1, 1))
    other = asyncio.create_task(pool.acquire("b1", 2, 1))
    await asyncio.wait_for(other, 1)
    assert not blocked.done()
    pool.release("a1")
    await asyncio.wait_for(blocked, 1)
    assert pool.running_in(1) == 1


async def test_cancelled_waiter_leaves_queue() -> None:
    pool = SlotPool(limit=1)
    await pool.acquire("a", 1, 5)
    waiter = asyncio.create_task(pool.acquire("b", 1, 5))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert pool.position("b") is None
    pool.release("a")
    assert pool.running == 0


async def test_thousands_waiting_stay_in_order() -> None:
    pool = SlotPool(limit=3)
    for job in ("r1", "r2", "r3"):
        await pool.acquire(job, 1, 3)
    waiters = [asyncio.create_task(pool.acquire(f"w{i}", 1 + i % 3, 3)) for i in range(2000)]
    await asyncio.sleep(0)
    assert pool.waiting == 2000
    assert pool.position("w0") == 1
    assert pool.position("w1999") == 2000
    for job in ("r1", "r2", "r3"):
        pool.release(job)
    await asyncio.wait_for(asyncio.gather(*waiters[:3]), 1)
    assert pool.position("w3") == 1
    assert [pool.holds(f"w{i}") for i in range(4)] == [True, True, True, False]
    for task in waiters[3:]:
        task.cancel()
    await asyncio.gather(*waiters[3:], return_exceptions=True)
    assert pool.waiting == 0
