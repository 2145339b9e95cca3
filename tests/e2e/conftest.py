"""End-to-end fixtures: the real bot against the local Discord and the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.harness import InProcessBot, World, make_world, running_bot


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as w:
        yield w


@pytest.fixture
async def bot(world: World) -> AsyncIterator[InProcessBot]:
    async with running_bot(world) as runner:
        yield runner
