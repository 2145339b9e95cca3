"""End-to-end fixtures: the real bot against the local Discord and the simulator.

Every e2e test also fails on an ERROR log record it did not declare (`@pytest.mark.allow_errors(regex, ...)`,
matched against `logger: message`), from the in-process bot or from a `python -m bot run` child's log, and on
any bot message that would ping someone other than a member who asked it something (no role, no @everyone).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import InProcessBot, World, assert_pings_only_requesters, make_world, running_bot

SUBPROCESS_ERROR = re.compile(r"^\S+Z (?:ERROR|CRITICAL)\s+(\S+: .*)$")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_errors(*patterns): ERROR log records (regexes on 'logger: message') a test provokes")


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
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as w:
        yield w
        assert_pings_only_requesters(w)


@pytest.fixture
async def bot(world: World) -> AsyncIterator[InProcessBot]:
    async with running_bot(world) as runner:
        yield runner
