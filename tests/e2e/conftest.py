"""End-to-end fixtures: the real bot against the local Discord and the simulator.

Every e2e test also fails on an ERROR log record it did not declare (`@pytest.mark.allow_errors(regex, ...)`,
matched against `logger: message`), from the in-process bot or from a `python -m bot run` child's log, and on
any bot message that would ping someone other than a member who asked it something (no role, no @everyone).

The bot runs on an SQLite file unless a test is parametrised with `harness.both_backends`: then once more on
a clean PostgreSQL database (tests/conftest.py's `pg_url`). Only a representative part of the suite runs
twice, to keep it quick.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import InProcessBot, World, assert_pings_only_requesters, make_world, running_bot
from tests.helpers import fast_upstream

SUBPROCESS_ERROR = re.compile(r"^\S+Z (?:ERROR|CRITICAL)\s+(\S+: .*)$")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_errors(*patterns): ERROR log records (regexes on 'logger: message') a test provokes")
    config.addinivalue_line(
        "markers", "upstream(poll_retries=3, timeout=1.0): the bot starts with fast upstream settings (fault tests)")


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture(autouse=True)
def no_unexpected_errors(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """Set up before (so torn down after) the bot: shutdown errors count too."""
    handler = _ErrorRecords()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
    lines = list(handler.lines)
    for log in tmp_path.glob("*.log"):
        lines += [m.group(1) for line in log.read_text(errors="replace").splitlines()
                  if (m := SUBPROCESS_ERROR.match(line))]
    allowed = [re.compile(p) for mark in request.node.iter_markers("allow_errors") for p in mark.args]
    unexpected = [line for line in lines if not any(p.search(line) for p in allowed)]
    if unexpected:
        pytest.fail("unexpected ERROR log records (declare provoked ones with @pytest.mark.allow_errors):\n  "
                    + "\n  ".join(unexpected[:10]), pytrace=False)


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
        assert_pings_only_requesters(w)
    if database_url is not None:  # the bot really ran on PostgreSQL: no SQLite file was made
        assert not (tmp_path / "bot.db").exists()


@pytest.fixture
async def bot(world: World, request: pytest.FixtureRequest) -> AsyncIterator[InProcessBot]:
    """The in-process bot; `@pytest.mark.upstream(poll_retries=, timeout=)` shrinks its upstream patience first."""
    for mark in request.node.iter_markers("upstream"):
        world.extra_env.update(fast_upstream(**mark.kwargs))
    async with running_bot(world) as runner:
        yield runner
