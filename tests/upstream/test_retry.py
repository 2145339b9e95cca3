"""RetryPolicy, Retry-After parsing and the poll schedule, as tables."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from bot.upstream import PollSchedule, RetryPolicy, parse_retry_after
from tests.simulator_fixtures import FixedRng


@pytest.mark.parametrize(("rng", "failures", "retry_after", "expected"), [
    (0.0, 1, None, 1.0),
    (0.0, 2, None, 2.0),
    (0.0, 3, None, 4.0),
    (1.0, 1, None, 0.75),  # the most jitter takes 25 % off
    (1.0, 3, None, 3.0),
    (0.5, 2, None, 1.75),
    (0.0, 1, 3.0, 3.0),  # Retry-After replaces the backoff
    (0.0, 1, 0.0, 0.0),
    (0.0, 1, 60.0, 60.0),  # up to the cap, honoured exactly
    (0.0, 1, 61.0, None),  # longer: left to the caller, not waited here
    (0.0, 4, None, None),  # attempts used up
    (0.0, 4, 1.0, None),
])
def test_delays(rng: float, failures: int, retry_after: float | None, expected: float | None) -> None:
    policy = RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=8.0, jitter=0.25, max_retry_after=60.0,
                         rng=FixedRng(rng))
    assert policy.delay(failures, retry_after) == expected


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(max_attempts=99, base_delay=1.0, max_delay=8.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 8, 8, 8]


def test_jitter_stays_in_bounds_with_a_real_rng() -> None:
    policy = RetryPolicy(max_attempts=99, base_delay=2.0, max_delay=30.0, jitter=0.25)
    for n in range(1, 10):
        raw = min(30.0, 2.0 * 2 ** (n - 1))
        assert 0.75 * raw <= (policy.delay(n) or 0) <= raw


NOW = 1_700_000_000.0


@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    ("", None),
    ("5", 5.0),
    ("2.5", 2.5),
    ("-3", 0.0),
    ("soon", None),
    ("inf", None),
    (format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True), 30.0),
    (format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True), 0.0),
])
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=lambda: NOW) == expected


def polls_for(duration: float, schedule: PollSchedule) -> int:
    """Polls needed to see a task of `duration` seconds finish (first poll after delay(0))."""
    t, attempt = 0.0, 0
    while True:
        t += schedule.delay(attempt)
        attempt += 1
        if t >= duration:
            return attempt


def test_schedule_starts_fast_then_slows() -> None:
    s = PollSchedule()
    delays = [s.delay(n) for n in range(40)]
    assert delays[:4] == [5, 10, 15, 20]
    assert delays == sorted(delays)
    assert max(delays) == s.cap == 120


@pytest.mark.parametrize(("minutes", "most"), [(1, 5), (10, 15), (30, 30), (60, 45), (120, 75)])
def test_schedule_cost(minutes: int, most: int) -> None:
    assert polls_for(minutes * 60, PollSchedule()) <= most
