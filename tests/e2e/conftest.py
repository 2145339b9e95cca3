"""End-to-end fixtures: the real bot against the local Discord and the simulator.

The bot runs on an SQLite file unless a test is parametrised with `harness.both_backends`: then once more on
a clean PostgreSQL database (tests/conftest.py's `pg_url`). Only a representative part of the suite runs
twice, to keep it quick.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.harness import InProcessBot, World, make_world, running_bot


@pytest.fixture
def backend() -> str:
    """SQLite unless the test is parametrised over both backends (which overrides this value)."""
    return "sqlite"


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    return str(request.getfixturevalue("pg_url")) if backend == "postgresql" else None


@pytest.fixture
async def world(tmp_path: Path, database_url: str | None) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url=database_url) as w:
        yield w
    if database_url is not None:  # the bot really ran on PostgreSQL: no SQLite file was made
        assert not (tmp_path / "bot.db").exists()


@pytest.fixture
async def bot(world: World) -> AsyncIterator[InProcessBot]:
    async with running_bot(world) as runner:
        yield runner
