"""`python -m bot run` (or `worker`, with BENCH_VERB=worker), plus (when BENCH_LAG_FILE is set) a probe that
measures this process's event-loop lag.

The probe sleeps 50 ms at a time and writes `<wall time> <seconds late>` per wake-up: how long any callback
of the bot would have waited for the loop. Used by bench_many_jobs.py, bench_delivery_memory.py and bench_scale_out.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.app import run_bot, run_worker
from bot.config import load_settings
from bot.logs import configure_logging

INTERVAL = 0.05


async def probe(path: Path) -> None:
    with path.open("a", buffering=1) as out:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(INTERVAL)
            late = time.perf_counter() - start - INTERVAL
            out.write(f"{time.time():.3f} {max(0.0, late):.5f}\n")


async def main() -> int:
    settings = load_settings(dotenv=None)
    configure_logging(settings.log_level, settings.log_format)
    lag_file = os.environ.get("BENCH_LAG_FILE")
    task = asyncio.create_task(probe(Path(lag_file))) if lag_file else None
    try:
        return await (run_worker if os.environ.get("BENCH_VERB") == "worker" else run_bot)(settings)
    finally:
        if task is not None:
            task.cancel()


def profiled() -> int:
    """With BENCH_PROFILE=FILE, run under cProfile and write its stats there on exit (pstats format)."""
    import cProfile

    profiler = cProfile.Profile()
    try:
        return profiler.runcall(asyncio.run, main())
    finally:
        profiler.dump_stats(os.environ["BENCH_PROFILE"])


if __name__ == "__main__":
    sys.exit(profiled() if os.environ.get("BENCH_PROFILE") else asyncio.run(main()))
