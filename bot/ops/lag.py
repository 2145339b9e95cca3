"""Event-loop lag: how late a timer fires tells whether the bot can still answer Discord within 3 s."""

from __future__ import annotations

import asyncio
import time

from bot.ops.metrics import Metrics

INTERVAL = 0.5


async def watch_loop_lag(metrics: Metrics, interval: float = INTERVAL) -> None:
    """Run for ever: sleep `interval`, record how much later than asked the loop woke us."""
    while True:
        start = time.perf_counter()
        await asyncio.sleep(interval)
        metrics.loop_lag.labels(metrics.process).observe(max(0.0, time.perf_counter() - start - interval))
