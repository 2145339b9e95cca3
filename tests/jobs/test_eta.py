"""Queue ETA (issue 15, item 6): the estimated start of the n-th waiting job, from the typical run time of the
server's recent jobs and when its running ones began."""

from __future__ import annotations

import pytest

from bot.jobs.eta import estimate

NOW = 1_000_000.0


@pytest.mark.parametrize(("started", "slots", "position", "expected"), [
    ((), 1, 1, NOW),  # a free slot: now
    ((NOW - 60,), 1, 1, NOW + 240),  # one running for a minute of its typical five
    ((NOW - 60,), 1, 3, NOW + 240 + 2 * 300),  # two more ahead of it, each five minutes
    ((NOW - 60, NOW - 240), 2, 1, NOW + 60),  # two slots: the one nearer its end frees first
    ((NOW - 60, NOW - 240), 2, 2, NOW + 240),
    ((NOW - 60, NOW - 240), 2, 3, NOW + 360),  # the first freed slot again, five minutes on
    ((NOW - 900,), 1, 1, NOW),  # running longer than typical: expected to end any moment, never in the past
    ((NOW - 10, NOW - 20, NOW - 30), 1, 1, NOW + 270),  # more running than slots (limit lowered): earliest ends
])
def test_estimated_start(started: tuple[float, ...], slots: int, position: int, expected: float) -> None:
    assert estimate(300.0, started, slots, position, NOW) == pytest.approx(expected)
