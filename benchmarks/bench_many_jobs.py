"""Many jobs at once: 1,000 jobs in flight against the simulator, followed by one bot process.

The real bot runs as a child process (`benchmarks/botproc.py`, MAX_RUNNING_JOBS=1000, production poll
schedule: SORA_TIME_SCALE=1) against the local Discord and the simulator (both in this process, loopback).
Ten servers (a server runs at most 100 jobs at once) each get 100 `/sora generate` at once; simulated tasks
take an hour, so all 1,000 stay in flight. Once every task is submitted, a window of W seconds measures the
bot: event-loop lag (a probe task inside the bot process wakes every 50 ms and records how late it is), CPU
(psutil, % of one core) and resident memory, and the status requests per second the simulator receives.
Halfway through, 100 more members send `/sora generate` at once: initial-response latency under load.

    python benchmarks/bench_many_jobs.py [--quick] [--window SECONDS]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

TARGET_P99_MS = 250.0
PER_GUILD = 100


def _lag(samples: list[float]) -> dict:
    return common.distribution(samples, 1000) if samples else {"n": 0}


async def run(quick: bool, window: float | None) -> dict:
    import psutil

    jobs = 60 if quick else 1000
    window = window or (6.0 if quick else 60.0)
    probe_n = 20 if quick else 100
    per_guild = min(PER_GUILD, jobs)
    with common.workdir("many") as tmp:
        async with common.world(tmp, pending_seconds=5, processing_seconds=3600) as w:
            w.extra_env.update({"SORA_TIME_SCALE": "1", "MAX_RUNNING_JOBS": str(jobs)})
            places = [(w.guild, w.channel)]
            while len(places) * per_guild < jobs:
                g = w.fake.add_guild(f"Server {len(places) + 1}")
                places.append((g, w.fake.add_channel(g.id, "general")))
            probe_guild = w.fake.add_guild("Probe server")
            probe_channel = w.fake.add_channel(probe_guild.id, "general")
            await common.prepare_guilds(tmp / "bot.db", [g.id for g, _ in places] + [probe_guild.id])
            bot = common.BotProcess(w.env(), tmp, probe=True)
            await bot.start(w.fake)
            proc = psutil.Process(bot.pid)
            rss_idle = proc.memory_info().rss
            try:
                # ---- ramp: 100 at once per server until `jobs` are accepted ----
                ramp_start, ramp_wall = time.perf_counter(), time.time()
                ramp_latency: list[float] = []
                left = jobs
                for guild, channel in places:
                    users = common.add_members(w.fake, guild.id, min(per_guild, left), prefix=f"g{guild.id % 97}-")
                    left -= len(users)
                    records = await common.dispatch_generates(w.fake, guild.id, channel.id, users)
                    lat, _ = await common.response_latencies(records)
                    ramp_latency += lat
                    await w.fake.wait_for(lambda rs=records: all(
                        r.original_message is not None and not r.original_message.loading for r in rs),
                        timeout=120, what="batch answered")
                await w.fake.wait_for(lambda: len(w.sim.state.tasks) >= jobs, timeout=300,
                                      recheck=0.2, what="every task submitted")
                ramp_s = time.perf_counter() - ramp_start
                ramp_lag = bot.lag_samples(since=ramp_wall)

                # ---- steady state: `jobs` tasks followed ----
                proc.cpu_percent(None)
                wall0, sim0 = time.time(), w.sim.state.now()
                polls_before = len(w.sim.state.requests_to("/v1/tasks/", "GET"))
                rss_max = 0
                probe_records: list = []
                t_end = time.perf_counter() + window
                probe_at = time.perf_counter() + window / 2
                while time.perf_counter() < t_end:
                    rss_max = max(rss_max, proc.memory_info().rss)
                    if not probe_records and time.perf_counter() >= probe_at:
                        users = common.add_members(w.fake, probe_guild.id, probe_n, prefix="probe")
                        probe_records = await common.dispatch_generates(w.fake, probe_guild.id, probe_channel.id,
                                                                        users)
                    await asyncio.sleep(0.25)
                cpu = proc.cpu_percent(None)
                polls = len(w.sim.state.requests_to("/v1/tasks/", "GET")) - polls_before
                sim_elapsed = w.sim.state.now() - sim0
                steady_lag = bot.lag_samples(since=wall0)
                probe_lat, probe_missing = await common.response_latencies(probe_records)
                running = sum(1 for t in w.sim.state.tasks.values() if t.status in ("pending", "processing"))
                rss_end = proc.memory_info().rss
                hwm_kb = bot.vm_hwm_kb() or 0
            finally:
                await bot.stop()
    probe = common.distribution(probe_lat, 1000)
    return {
        "jobs": jobs, "servers": len(places), "window_s": window,
        "ramp": {"seconds": round(ramp_s, 1), "initial_response_ms": common.distribution(ramp_latency, 1000),
                 "loop_lag_ms": _lag(ramp_lag)},
        "steady": {
            "tasks_in_flight": running, "loop_lag_ms": _lag(steady_lag), "cpu_percent_of_one_core": round(cpu, 1),
            "rss_idle_mb": round(rss_idle / 1e6, 1), "rss_max_mb": round(max(rss_max, rss_end) / 1e6, 1),
            "vm_hwm_mb": round(hwm_kb * 1024 / 1e6, 1),
            "status_requests_per_s": round(polls / sim_elapsed, 1) if sim_elapsed else None,
            "initial_response_ms": probe, "initial_response_missing": probe_missing,
        },
        "target_p99_ms": TARGET_P99_MS,
        "target_met": probe.get("p99", 1e9) < TARGET_P99_MS and not probe_missing,
    }


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(__doc__ or "", argv, extra=[("--window", {"type": float, "default": None,
                                                                         "help": "steady-state seconds"})])
    common.quiet_logs()
    r = asyncio.run(run(args.quick, args.window))
    ramp, steady = r["ramp"], r["steady"]
    rl, sl, ir = ramp["loop_lag_ms"], steady["loop_lag_ms"], steady["initial_response_ms"]
    print(common.table(f"{r['jobs']} jobs in flight ({r['servers']} servers x 100), one bot process",
                       ["phase", "seconds", "loop lag p99 (ms)", "loop lag max (ms)", "initial resp p99 (ms)"],
                       [["ramp (accept + submit all)", ramp["seconds"], rl.get("p99"), rl.get("max"),
                         ramp["initial_response_ms"].get("p99")],
                        ["steady (following all)", r["window_s"], sl.get("p99"), sl.get("max"), ir.get("p99")]]))
    print()
    print(common.table("Steady state", ["measure", "value"], [
        ["tasks in flight upstream", steady["tasks_in_flight"]],
        ["GET /v1/tasks per second", steady["status_requests_per_s"]],
        ["bot CPU (% of one core)", steady["cpu_percent_of_one_core"]],
        ["bot RSS idle -> max (MB)", f"{steady['rss_idle_mb']} -> {steady['rss_max_mb']}"],
        [f"initial response, {ir.get('n', 0)} at once: p50/p95/p99/max (ms)",
         f"{ir.get('p50')}/{ir.get('p95')}/{ir.get('p99')}/{ir.get('max')}"],
    ]))
    print(f"target: initial response p99 < {TARGET_P99_MS:.0f} ms while {r['jobs']} jobs are followed -> "
          f"{'met' if r['target_met'] else 'MISSED'}")
    common.emit("many_jobs", r, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
