"""Real databases with an injected clock, no mocks: an SQLite file in tmp_path, or a fresh PostgreSQL database.

`db` (and `db_target`) run each test once per backend; `db_path` is for the few SQLite-only tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.db import Database
from storage.jobs import NewJob

# A Wednesday, mid-month, mid-day: far from every refill boundary.
T0 = datetime(2025, 1, 15, 12, 0, tzinfo=UTC).timestamp()
GUILD = 1001
OTHER_GUILD = 2002
ALICE = 11
BOB = 22


class Clock:
    """A settable clock for the database: tests move time instead of sleeping."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def set(self, moment: datetime) -> None:
        self.t = moment.timestamp()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "bot.db"


@pytest.fixture
def db_target(backend: str, db_path: Path, request: pytest.FixtureRequest) -> str | Path:
    """What `Database.open` is given: the SQLite file, or a fresh PostgreSQL database's URL."""
    if backend == "sqlite":
        return db_path
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def db(db_target: str | Path, clock: Clock) -> AsyncIterator[Database]:
    database = await Database.open(db_target, clock=clock)
    try:
        yield database
    finally:
        await database.close()


def request(user_id: int = ALICE, *, guild_id: int = GUILD, duration: int = 4, channel_id: int = 500,
            **extra: object) -> NewJob:
    """A job request costing 25 credits per second, as bot.pricing prices it."""
    return NewJob(guild_id=guild_id, channel_id=channel_id, user_id=user_id, prompt="a cat on a skateboard",
                  duration=duration, cost=25 * duration, **extra)  # type: ignore[arg-type]


async def run_to_completed(db: Database, job_id: str) -> None:
    """Move a job through the runner's steps up to `completed`."""
    await db.jobs.mark_submitting(job_id)
    await db.jobs.mark_running(job_id, f"task-{job_id}")
    await db.jobs.mark_completed(job_id, "https://cdn.example/v.mp4", T0 + 86_400)
