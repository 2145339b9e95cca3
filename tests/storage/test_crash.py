"""Kill a process mid-stream with SIGKILL, repeatedly; every reopen must find the books balanced (both backends).

On PostgreSQL a killed client's open transaction is rolled back by the server (its socket closes with the
process); on SQLite the WAL and the rollback journal do the same for the file.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage.db import Database
from storage.jobs import NewJob
from tests.storage.crash_worker import GUILD

ROOT = Path(__file__).resolve().parents[2]
KILLS = 6


def _start(target: str | Path, seed: int, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.storage.crash_worker", str(target), str(seed), *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_ready(proc: subprocess.Popen[str], deadline: float, word: str = "ready") -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the worker prints "ready" within a second or two
    if line.strip() != word:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"worker did not start: {line!r} {err[-2000:]}")
    assert time.monotonic() < deadline


async def _counts(db: Database) -> tuple[int, int]:
    jobs = await db.fetchone("SELECT COUNT(*) AS n FROM jobs")
    entries = await db.fetchone("SELECT COUNT(*) AS n FROM ledger")
    assert jobs is not None and entries is not None
    return int(jobs["n"]), int(entries["n"])


def _kill(proc: subprocess.Popen[str]) -> None:
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.timeout(120)
async def test_sigkill_at_random_moments_never_unbalances_the_books(db_target: str | Path) -> None:
    rng = random.Random(2024)
    deadline = time.monotonic() + 100
    previous = (0, 0)
    for round_ in range(KILLS):
        proc = _start(db_target, seed=round_)
        try:
            _wait_ready(proc, deadline)
            time.sleep(rng.uniform(0.05, 0.6))  # let it run a while: then kill it wherever it is
        finally:
            _kill(proc)
        db = await Database.open(db_target)
        try:
            problems = await db.ledger.verify()
            assert problems == [], f"after kill {round_ + 1}: {problems}"
            unfinished = await db.jobs.unfinished()  # what a restarted bot would resume
            assert all(job.state in ("queued", "submitting", "running", "completed") for job in unfinished)
            counts = await _counts(db)
        finally:
            await db.close()
        assert counts[1] >= previous[1]  # committed work is never lost
        previous = counts
        assert time.monotonic() < deadline
    assert previous[0] > KILLS  # the workers really were writing when they died


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.timeout(60)
async def test_sigkill_inside_an_open_transaction_keeps_nothing_of_it(db_target: str | Path) -> None:
    """The worker stops inside create_with_hold's transaction (job row and hold written, not committed)."""
    proc = _start(db_target, 0, "--hang-in-transaction")
    try:
        _wait_ready(proc, time.monotonic() + 30, word="in-transaction")
    finally:
        _kill(proc)
    db = await Database.open(db_target)
    try:
        async with asyncio.timeout(20):  # the killed session's locks are gone: a new admission gets through
            job = await db.jobs.create_with_hold(NewJob(GUILD, 1, 1, "after the crash", 4, 100))
        assert [j.id for j in await db.jobs.unfinished()] == [job.id]
        assert await db.ledger.verify() == []
        balance = await db.ledger.balance(GUILD, 1)
        assert (balance.available, balance.held) == (900, 100)
    finally:
        await db.close()
