"""Shared pieces of the benchmarks: machine info, percentiles, tables, the final JSON line, a bot subprocess.

Every benchmark runs on loopback only: the local Discord (packages/fake-discord) and the video API simulator
run in the benchmark's own process; the bot runs in-process or as a child process (`benchmarks/botproc.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

JSON_PREFIX = "BENCH_JSON "


def machine() -> dict[str, Any]:
    """Cores and memory of this machine (what `nproc` and `free -g` say), plus Python and OS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 0
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cores": cores, "memory_gb": mem_gb, "cpu": cpu, "python": platform.python_version(),
            "os": f"{platform.system()} {platform.release()}"}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def distribution(values: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    """n, p50, p95, p99 and max, multiplied by `scale` (1000 for seconds → ms)."""
    if not values:
        return {"n": 0}
    return {"n": len(values), **{f"p{q}": round(percentile(values, q) * scale, 2) for q in (50, 95, 99)},
            "max": round(max(values) * scale, 2)}


def table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table."""
    body = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def emit(name: str, results: dict[str, Any], *, quick: bool) -> None:
    """The final line of every benchmark: one JSON object (run_all.py and the README table read it)."""
    print(JSON_PREFIX + json.dumps({"benchmark": name, "quick": quick, "machine": machine(), **results},
                                   default=str), flush=True)


def parse_args(description: str, argv: Sequence[str] | None = None,
               extra: Sequence[tuple[str, dict[str, Any]]] = ()) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small N, for a smoke run (CI)")
    for flag, kwargs in extra:
        parser.add_argument(flag, **kwargs)
    return parser.parse_args(argv)


def quiet_logs() -> None:
    """Benchmarks measure work, not log formatting: keep only warnings from the in-process parts."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("discord", "aiohttp", "bot", "storage", "cogs", "tests"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def workdir(prefix: str) -> Any:
    with tempfile.TemporaryDirectory(prefix=f"sora-bench-{prefix}-") as tmp:
        yield Path(tmp)


GENEROUS = {"starting_credits": 1_000_000, "max_jobs_per_member": 50, "cooldown_seconds": 0,
            "max_jobs_per_guild": 100, "daily_budget": 0}


async def prepare_guilds(db_path: Path, guild_ids: Iterable[int], **overrides: Any) -> None:
    """Give servers settings that refuse nothing, before the bot starts (same SQLite file)."""
    from storage.db import Database

    db = await Database.open(db_path)
    try:
        for guild_id in guild_ids:
            await db.guilds.update(guild_id, **{**GENEROUS, **overrides})
    finally:
        await db.close()


def add_members(fake: Any, guild_id: int, count: int, prefix: str = "m") -> list[Any]:
    users = []
    for i in range(count):
        user = fake.add_user(f"{prefix}{guild_id % 1000}-{i}")
        fake.add_member(guild_id, user.id)
        users.append(user)
    return users


async def dispatch_generates(fake: Any, guild_id: int, channel_id: int, users: Sequence[Any],
                             prompt: str = "a red fox running through snow") -> list[Any]:
    """Send one `/sora generate` per user, all at once; returns the InteractionRecords."""
    return list(await asyncio.gather(*(
        fake.slash(guild_id, channel_id, u.id, "sora generate", options={"prompt": prompt, "duration": 4})
        for u in users
    )))


async def response_latencies(records: Sequence[Any], timeout: float = 30.0) -> tuple[list[float], int]:
    """Seconds from dispatch to each initial callback; also how many got none (or were refused)."""
    async def one(record: Any) -> float | None:
        try:
            await record.wait_response(timeout)
        except (TimeoutError, AssertionError):
            return None
        return record.response_latency

    values = await asyncio.gather(*(one(r) for r in records))
    ok = [v for v in values if v is not None]
    return ok, len(values) - len(ok)


class BotProcess:
    """The real bot as a child process (`benchmarks/botproc.py`: `python -m bot run` plus an event-loop probe)."""

    def __init__(self, env: dict[str, str], tmp: Path, *, probe: bool = False, name: str = "bot") -> None:
        self.env, self.tmp, self.probe = env, tmp, probe
        self.log = tmp / f"{name}.log"
        self.lag_file = tmp / f"{name}.lag"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, fake: Any, timeout: float = 60.0) -> None:
        before = fake.identify_count
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        if self.probe:
            env["BENCH_LAG_FILE"] = str(self.lag_file)
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "benchmarks" / "botproc.py"), cwd=self.tmp, env=env,
                stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL,
            )
        await fake.wait_for(lambda: fake.identify_count > before, timeout=timeout, what="bot identified")
        await fake.sync_wait_commands(timeout=timeout)
        await asyncio.sleep(0.3)  # setup_hook finished (runner started) a moment after commands were synced

    def lag_samples(self, since: float = 0.0) -> list[float]:
        """Event-loop lag samples (seconds) the probe wrote at or after wall time `since`."""
        if not self.lag_file.exists():
            return []
        out = []
        for line in self.lag_file.read_text().splitlines():
            with contextlib.suppress(ValueError):
                at, lag = line.split()
                if float(at) >= since:
                    out.append(float(lag))
        return out

    def vm_hwm_kb(self) -> int | None:
        return read_status_kb(self.pid, "VmHWM")

    async def stop(self) -> int | None:
        if self.proc is None or self.proc.returncode is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def read_status_kb(pid: int, field: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmHWM: peak resident set, VmRSS: current)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


@contextlib.asynccontextmanager
async def world(tmp: Path, **sim_settings: Any) -> AsyncIterator[Any]:
    """The e2e harness's world (local Discord + simulator on 127.0.0.1), logs quiet."""
    from tests.e2e.harness import make_world

    async with make_world(tmp, **sim_settings) as w:
        w.extra_env.update({"LOG_LEVEL": "WARNING"})
        yield w
