"""When to try again: one backoff policy for failed calls, one schedule for status polls, and the poll loop.

Sleep, clock and randomness are injected so tests run instantly and assert exact delays.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol

from bot.upstream.errors import RateLimited, TaskNotFound, TaskTimedOut, VideoAPIError

if TYPE_CHECKING:
    from bot.upstream.models import Task

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[Any]]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, a cap, a bounded number of attempts, and Retry-After honoured.

    `delay(n)` is the wait before attempt n+1 after n failures: min(max_delay, base_delay * 2**(n-1)),
    reduced by up to `jitter` (a fraction) at random. A Retry-After up to `max_retry_after` replaces it;
    a longer one is not waited out here: the error goes to the caller, which knows how to queue.
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    jitter: float = 0.25
    max_retry_after: float = 60.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def backoff(self, failures: int) -> float:
        """The jittered exponential delay after `failures` (>= 1) failed attempts."""
        raw = min(self.max_delay, self.base_delay * 2.0 ** max(failures - 1, 0))
        return raw * (1.0 - self.jitter * self.rng.random())

    def delay(self, failures: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next attempt, or None when no further attempt should be made here."""
        if failures >= self.max_attempts:
            return None
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            return max(0.0, retry_after)
        return self.backoff(failures)



def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Read a Retry-After header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


# Fast at first, then once a minute until 15 minutes, then every 90 s, then every 2 minutes: a task of
# 10 minutes costs 14 polls and an hour about 44.
DEFAULT_STEPS: tuple[float, ...] = (5, 10, 15, 20, 30, 45) + (60,) * 13 + (90,) * 10


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """Delays between GET /v1/tasks polls; `delay(0)` is the wait before the first poll."""

    steps: tuple[float, ...] = DEFAULT_STEPS
    cap: float = 120.0

    def scaled(self, factor: float) -> PollSchedule:
        """The same schedule with every wait multiplied by `factor` (SORA_TIME_SCALE for tests and demos)."""
        return PollSchedule(steps=tuple(step * factor for step in self.steps), cap=self.cap * factor)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before poll number `attempt` (0-based)."""
        if attempt < len(self.steps):
            return min(self.steps[max(attempt, 0)], self.cap)
        return self.cap


class TaskSource(Protocol):
    """What wait_for_task needs from the client."""

    async def get_task(self, task_id: str) -> Task: ...


async def _pause(seconds: float, sleep: Sleep, wake: asyncio.Event | None) -> bool:
    """Sleep `seconds`, or less if `wake` is set; returns True when woken early."""
    if wake is None:
        await sleep(seconds)
        return False
    if wake.is_set():
        wake.clear()
        return True
    sleeper = asyncio.ensure_future(sleep(seconds))
    waiter = asyncio.ensure_future(wake.wait())
    try:
        done, _ = await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in (sleeper, waiter):
            if not fut.done():
                fut.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fut
    woke = waiter in done
    wake.clear()
    return woke


# The longest Retry-After honoured anywhere; a longer one (or a date far ahead) is read as this.
MAX_RETRY_AFTER = 600.0
# Status reads failing in a row (after the client's own retries) before following is given up, and the waits
# between them: about 20 minutes of a lasting outage, then the member is refunded instead of waiting for hours.
READ_FAILURES = RetryPolicy(max_attempts=12, base_delay=2.0, max_delay=120.0)


def capped(retry_after: float | None) -> float | None:
    """A Retry-After we are willing to wait: never more than MAX_RETRY_AFTER."""
    return None if retry_after is None else min(max(retry_after, 0.0), MAX_RETRY_AFTER)


async def wait_for_task(
    client: TaskSource,
    task_id: str,
    *,
    schedule: PollSchedule | None = None,
    sleep: Sleep = asyncio.sleep,
    on_update: Callable[[Task], Any] | None = None,
    on_read_failure: Callable[[VideoAPIError, int], Any] | None = None,
    wake: asyncio.Event | None = None,
    poll_first: bool = False,
    clock: Callable[[], float] = time.time,
    deadline: float | None = None,
    read_failures: RetryPolicy = READ_FAILURES,
) -> Task:
    """Poll a task until it is terminal, the deadline passes, or status reads keep failing.

    A failed read (5xx, 429, network error, an answer that makes no sense) says nothing about the task, so it
    never ends the wait by itself: only the task's own terminal status or 404 `task_not_found` does, or a run
    of `read_failures.max_attempts` failed reads in a row.

    Args:
        client: anything with `async get_task(task_id) -> Task` (the VideoAPIClient).
        schedule: delays between polls.
        sleep: injected sleep.
        on_update: called (sync or async) with the task whenever its status or progress changed.
        on_read_failure: called (sync or async) with each failed read and the length of the current run.
        wake: set by a callback to poll at once instead of at the next scheduled time.
        poll_first: poll before the first delay (resuming a task that may be long done).
        clock: the time `deadline` is measured on.
        deadline: `clock()` value past which the task is given up (JOB_TIMEOUT after submission).
        read_failures: how many failed reads in a row end the wait, and the backoff between them.

    Raises:
        TaskTimedOut: still unfinished at `deadline`.
        TaskNotFound: the upstream does not know the task.
        VideoAPIError: the last failed read, after a run of `read_failures.max_attempts`.
    """
    schedule = schedule or PollSchedule()
    attempt = 0
    failures = 0
    last: tuple[str, float | None] | None = None

    async def pause(seconds: float) -> None:
        if deadline is not None:
            seconds = min(seconds, max(deadline - clock(), 0.0))
        await _pause(seconds, sleep, wake)

    if not poll_first:
        await pause(schedule.delay(0))
        attempt = 1
    while True:
        if deadline is not None and clock() >= deadline:
            raise TaskTimedOut(f"task {task_id} unfinished at its deadline")
        try:
            task = await client.get_task(task_id)
        except TaskNotFound:
            raise
        except RateLimited as exc:
            delay = max(capped(exc.retry_after) or 0.0, schedule.delay(attempt))
            log.info("status poll rate limited; waiting %.1fs", delay)
            attempt += 1
            await pause(delay)
            continue
        except VideoAPIError as exc:
            failures += 1
            await _call(on_read_failure, exc, failures)
            if failures >= read_failures.max_attempts:
                raise
            delay = max(read_failures.backoff(failures), capped(exc.retry_after) or 0.0)
            log.warning("status read failed (%s); read %s of a run, next in %.1fs", exc.code, failures, delay)
            await pause(delay)
            continue
        failures = 0
        seen = (task.status, task.progress)
        if seen != last:
            last = seen
            await _call(on_update, task)
        if task.is_terminal:
            return task
        await pause(schedule.delay(attempt))
        attempt += 1


async def _call(callback: Callable[..., Any] | None, *args: Any) -> None:
    if callback is not None:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result
