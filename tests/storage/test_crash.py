"""Kill a process mid-stream with SIGKILL, repeatedly; every reopen must find the books balanced."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage.db import Database

ROOT = Path(__file__).resolve().parents[2]
KILLS = 6


def _start(db_path: Path, seed: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.storage.crash_worker", str(db_path), str(seed)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_ready(proc: subprocess.Popen[str], deadline: float) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the worker prints "ready" within a second or two
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"worker did not start: {line!r} {err[-2000:]}")
    assert time.monotonic() < deadline


def _counts(db_path: Path) -> tuple[int, int]:
    with sqlite3.connect(db_path) as conn:
        jobs = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        entries = conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    return jobs, entries


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.timeout(120)
async def test_sigkill_at_random_moments_never_unbalances_the_books(tmp_path: Path) -> None:
    db_path = tmp_path / "crash.db"
    rng = random.Random(2024)
    deadline = time.monotonic() + 100
    previous = (0, 0)
    for round_ in range(KILLS):
        proc = _start(db_path, seed=round_)
        try:
            _wait_ready(proc, deadline)
            time.sleep(rng.uniform(0.05, 0.6))  # let it run a while: then kill it wherever it is
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
        db = await Database.open(db_path)
        try:
            problems = await db.ledger.verify()
            assert problems == [], f"after kill {round_ + 1}: {problems}"
            unfinished = await db.jobs.unfinished()  # what a restarted bot would resume
            assert all(job.state in ("queued", "submitting", "running", "completed") for job in unfinished)
        finally:
            await db.close()
        counts = _counts(db_path)
        assert counts[1] >= previous[1]  # committed work is never lost
        previous = counts
        assert time.monotonic() < deadline
    assert previous[0] > KILLS  # the workers really were writing when they died
