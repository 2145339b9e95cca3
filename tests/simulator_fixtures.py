"""Shared fixtures: a real simulator on loopback, a real aiohttp session, and instant, recorded sleeps."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.simulator import SimClock, Simulator, SimulatorState
from bot.upstream import RetryPolicy, VideoAPIClient

KEY = "sk-test-key-0123456789"


class FixedRng(random.Random):
    """A random source that always says `value`, so jittered delays are exact."""

    def __init__(self, value: float = 0.0) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


class RecordingSleep:
    """An instant sleep that records each delay and moves the simulator's frozen clock by it."""

    def __init__(self, clock: SimClock | None = None) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def sim_state(tmp_path_factory: pytest.TempPathFactory) -> SimulatorState:
    """Frozen time (speed 0): tests move it with `state.clock.advance` or a RecordingSleep."""
    return SimulatorState(clock=SimClock(speed=0.0), pending_seconds=1.0, processing_seconds=30.0)


@pytest.fixture
async def simulator(sim_state: SimulatorState) -> AsyncIterator[Simulator]:
    async with Simulator(sim_state, tick=0.01) as sim:
        yield sim


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def sleep(sim_state: SimulatorState) -> RecordingSleep:
    return RecordingSleep(sim_state.clock)


@pytest.fixture
def policy() -> RetryPolicy:
    return RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=8.0, jitter=0.25, rng=FixedRng(0.0))


@pytest.fixture
def client(session: aiohttp.ClientSession, simulator: Simulator, policy: RetryPolicy,
           sleep: RecordingSleep) -> VideoAPIClient:
    return VideoAPIClient(session, base_url=simulator.base_url, api_key=KEY, retry=policy, sleep=sleep)


async def finish(state: SimulatorState, client: VideoAPIClient, task_id: str) -> None:
    """Move frozen time past the task's end."""
    task = state.tasks[task_id]
    state.clock.advance(task.pending_seconds + task.processing_seconds + 1)
    state.refresh(task)
