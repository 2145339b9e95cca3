"""Child process for test_crash.py: a stream of holds, settlements, releases and adjusts until it is killed.

Usage: python -m tests.storage.crash_worker DB_PATH_OR_URL SEED [--hang-in-transaction]
Prints "ready" once its first job is written, so the parent knows it is mid-stream when it kills it.
With --hang-in-transaction it instead stops inside create_with_hold's transaction, after the job row and its
hold are written but before COMMIT, prints "in-transaction" and waits to be killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from collections.abc import AsyncIterator

from storage.conn import Conn
from storage.db import Database
from storage.errors import QuotaRefused
from storage.jobs import NewJob

GUILD = 7
MEMBERS = range(1, 6)


async def stream(path: str, seed: int) -> None:
    rng = random.Random(seed)
    db = await Database.open(path)
    await db.guilds.update(GUILD, starting_credits=1_000, cooldown_seconds=0, max_jobs_per_member=20)
    announced = False
    while True:
        user = rng.choice(MEMBERS)
        action = rng.random()
        if action < 0.1:
            await db.ledger.adjust(GUILD, user, rng.randint(-300, 600), actor_id=99, reason="crash test")
            continue
        open_jobs = await db.jobs.active_for_guild(GUILD)
        if open_jobs and action < 0.55:
            job = rng.choice(open_jobs)
            if job.state == "queued":
                await db.jobs.mark_submitting(job.id)
            elif job.state == "submitting":
                await db.jobs.mark_running(job.id, f"task-{job.id}")
            elif job.state == "running":
                if rng.random() < 0.3:
                    await db.jobs.finish_failed(job.id, "upstream_error", "failed")
                else:
                    await db.jobs.mark_completed(job.id, "https://cdn/v.mp4", None)
            else:
                await db.jobs.finish_delivered(job.id, None)
            continue
        if open_jobs and action < 0.65:
            await db.ledger.refund(rng.choice(open_jobs).id, actor_id=99, reason="crash test")
            continue
        duration = rng.choice((4, 8, 12))
        try:
            await db.jobs.create_with_hold(NewJob(GUILD, 1, user, "crash", duration, 25 * duration))
        except QuotaRefused:
            await db.ledger.adjust(GUILD, user, 500, actor_id=99, reason="top up")
        if not announced:
            print("ready", flush=True)
            announced = True


async def hang_in_transaction(target: str) -> None:
    db = await Database.open(target)
    await db.guilds.update(GUILD, starting_credits=1_000, cooldown_seconds=0, max_jobs_per_member=20)
    await db.ledger.balance(GUILD, 1)  # the grant is committed; only the job and its hold stay open
    real_write = db.write

    @contextlib.asynccontextmanager
    async def write_then_hang() -> AsyncIterator[Conn]:
        async with real_write() as conn:
            yield conn
            print("in-transaction", flush=True)  # the body ran: job row and hold written, not committed
            await asyncio.sleep(3600)

    db.write = write_then_hang  # type: ignore[method-assign]
    await db.jobs.create_with_hold(NewJob(GUILD, 1, 1, "never committed", 4, 100))


if __name__ == "__main__":
    if "--hang-in-transaction" in sys.argv:
        asyncio.run(hang_in_transaction(sys.argv[1]))
    else:
        asyncio.run(stream(sys.argv[1], int(sys.argv[2])))
