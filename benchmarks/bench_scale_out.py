"""Scale-out: 1 and 3 bot processes on one PostgreSQL database, 3,000 jobs in flight, then `kill -9` of one.

Layouts: one `run` process holding every shard; and three processes: `run` on shard 0 of 2, `run` on shard 1
of 2, and a `worker` (no gateway). Each process is `benchmarks/botproc.py` (the real bot plus an event-loop lag
probe) on one PostgreSQL server (tests/pgserver.py, fsync on), against the local Discord and the video API
simulator running in this process (loopback). Thirty servers (15 per shard; a server runs at most 100 jobs at
once) each get 100 `/sora generate` at once; simulated tasks take an hour, so all 3,000 stay in flight, polled
on the production schedule (SORA_TIME_SCALE=1; 0.05 with --quick).

Measured per layout: the ramp (accept and submit all), claims per second (every claim moves a job's fencing
number, so the sum of `jobs.fence` counts them), then a steady window: each process's event-loop lag p99,
initial-response p99 of 100 more commands sent at once (on both shards) while the 3,000 are followed, status
polls (`GET /v1/tasks`) per second. Three processes: then `kill -9` of the process holding the most jobs; how
long until another process holds each of its jobs; then every render ends, every job is delivered, and the
books are audited: jobs lost (not delivered), double charges, second video posts, second upstream tasks.

    python benchmarks/bench_scale_out.py [--quick] [--window SECONDS] [--lease SECONDS]
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

PER_GUILD = 100
SHARDS = 2
T0 = time.perf_counter()


def phase(text: str) -> None:
    """Progress on stderr (a full run takes minutes); stdout keeps the tables and the JSON line."""
    print(f"[{time.perf_counter() - T0:7.1f} s] {text}", file=sys.stderr, flush=True)


class Proc(common.BotProcess):
    """A botproc child that is `run` on some shards or a `worker`; ready once its /healthz answers 200."""

    def __init__(self, env: dict[str, str], tmp: Path, name: str, verb: str) -> None:
        from tests.helpers import free_port

        self.metrics_port = free_port()
        super().__init__({**env, "BENCH_VERB": verb, "SORA_PROCESS_NAME": name,
                          "METRICS_PORT": str(self.metrics_port)}, tmp, probe=True, name=name)
        self.name, self.verb = name, verb

    async def start(self, fake: Any, timeout: float = 90.0) -> None:
        import aiohttp

        env = {**os.environ, **self.env, "PYTHONPATH": str(common.ROOT), "BENCH_LAG_FILE": str(self.lag_file)}
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(common.ROOT / "benchmarks" / "botproc.py"), cwd=self.tmp, env=env,
                stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
                try:
                    async with http.get(f"http://127.0.0.1:{self.metrics_port}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} not healthy after {timeout} s:\n{self.tail()}")
                await asyncio.sleep(0.1)


async def _q(url: str, sql: str, *args: Any) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _prepare(url: str, guild_ids: list[int]) -> None:
    from storage.db import Database

    db = await Database.open(url)
    try:
        for guild_id in guild_ids:
            await db.guilds.update(guild_id, **common.GENEROUS)
    finally:
        await db.close()


async def _own_lag(samples: list[float]) -> None:
    """This process's own loop lag (it runs the local Discord and the simulator for every bot process): when it
    is late, so are Discord's answers and the deadline it enforces, whatever the bots do."""
    while True:
        start = time.perf_counter()
        await asyncio.sleep(0.05)
        samples.append(max(0.0, time.perf_counter() - start - 0.05))


async def _fences(url: str) -> int:
    return int((await _q(url, "SELECT COALESCE(SUM(fence), 0) AS n FROM jobs"))[0]["n"])


async def layout(server: Any, name: str, processes: int, jobs: int, window: float, lease: float,
                 probe_n: int, kill: bool, time_scale: float) -> dict[str, Any]:
    from tests.pgserver import create_database

    url = await create_database(server, f"bench_scale_{name}")
    with common.workdir(f"scale-{name}") as tmp:
        async with common.world(tmp, pending_seconds=5, processing_seconds=3600) as w:
            w.database_url = url
            w.extra_env.update({"SORA_TIME_SCALE": f"{time_scale:g}", "MAX_RUNNING_JOBS": str(jobs),
                                "JOB_LEASE_SECONDS": f"{lease:g}"})
            places = []
            for i in range(max(1, -(-jobs // PER_GUILD))):
                g = w.fake.add_guild(f"Server {i + 1}", shard=(i % SHARDS, SHARDS))
                places.append((g, w.fake.add_channel(g.id, "general")))
            probes = []
            for shard in range(SHARDS):
                g = w.fake.add_guild(f"Probe {shard}", shard=(shard, SHARDS))
                probes.append((g, w.fake.add_channel(g.id, "general")))
            await _prepare(url, [g.id for g, _ in places + probes] + [w.guild.id])
            env = w.env()
            if processes == 1:
                procs = [Proc(env, tmp, "all", "run")]
            else:
                procs = [Proc({**env, "SHARD_COUNT": str(SHARDS), "SHARD_IDS": str(s)}, tmp, f"shard{s}", "run")
                         for s in range(SHARDS)] + [Proc(env, tmp, "worker", "worker")]
            try:
                for proc in procs:
                    phase(f"{name}: starting {proc.name}")
                    await proc.start(w.fake)
                await w.fake.sync_wait_commands(timeout=60)
                return await _measure(w, url, procs, places, probes, jobs, window, probe_n, kill, lease)
            finally:
                for proc in procs:
                    await proc.stop()


async def _measure(w: Any, url: str, procs: list[Proc], places: list[Any], probes: list[Any], jobs: int,
                   window: float, probe_n: int, kill: bool, lease: float) -> dict[str, Any]:
    # ---- ramp: 100 at once per server until `jobs` are accepted, then until every task is submitted ----
    ramp_start = time.perf_counter()
    harness_lag: list[float] = []
    prober = asyncio.create_task(_own_lag(harness_lag))
    fence0 = await _fences(url)
    left, ramp_latency, missing = jobs, [], 0
    for guild, channel in places:
        users = common.add_members(w.fake, guild.id, min(PER_GUILD, left), prefix=f"g{guild.id % 97}-")
        left -= len(users)
        records = await common.dispatch_generates(w.fake, guild.id, channel.id, users)
        lat, miss = await common.response_latencies(records)
        ramp_latency += lat
        missing += miss
        if left <= 0:
            break
    accepted, deadline = 0, time.perf_counter() + 120  # every answered command writes its job (GENEROUS settings)
    while time.perf_counter() < deadline:
        accepted = int((await _q(url, "SELECT COUNT(*) AS n FROM jobs"))[0]["n"])
        if accepted >= jobs - missing:
            break
        await asyncio.sleep(0.2)
    phase(f"ramp: {accepted} of {jobs} accepted ({missing} unanswered); waiting for every task")
    await w.fake.wait_for(lambda: len(w.sim.state.tasks) >= accepted, timeout=600, recheck=0.5,
                          what="every task submitted")
    prober.cancel()
    phase("steady window")
    ramp_s = time.perf_counter() - ramp_start
    claims_ramp = await _fences(url) - fence0
    owners = {r["owner"].split("#")[0]: int(r["n"]) for r in await _q(
        url, "SELECT owner, COUNT(*) AS n FROM jobs WHERE owner IS NOT NULL GROUP BY owner")}

    # ---- steady: every task followed; halfway, probe commands on both shards ----
    wall0, sim0 = time.time(), w.sim.state.now()
    polls0 = len(w.sim.state.requests_to("/v1/tasks/", "GET"))
    fence1 = await _fences(url)
    probe_records: list[Any] = []
    t_end, probe_at = time.perf_counter() + window, time.perf_counter() + window / 2
    while time.perf_counter() < t_end:
        if not probe_records and time.perf_counter() >= probe_at:
            for guild, channel in probes:
                users = common.add_members(w.fake, guild.id, probe_n // len(probes), prefix=f"probe{guild.id % 7}")
                probe_records += await common.dispatch_generates(w.fake, guild.id, channel.id, users)
        await asyncio.sleep(0.25)
    polls = len(w.sim.state.requests_to("/v1/tasks/", "GET")) - polls0
    sim_elapsed = w.sim.state.now() - sim0
    claims_steady = await _fences(url) - fence1
    probe_lat, probe_missing = await common.response_latencies(probe_records)
    lag = {p.name: common.distribution(p.lag_samples(since=wall0), 1000) for p in procs}
    total = accepted + len(probe_records)
    result: dict[str, Any] = {
        "processes": len(procs), "jobs": jobs, "window_s": window, "lease_s": lease,
        "ramp": {"seconds": round(ramp_s, 1), "claims": claims_ramp,
                 "claims_per_s": round(claims_ramp / ramp_s, 1) if ramp_s else None,
                 "initial_response_ms": common.distribution(ramp_latency, 1000), "no_response": missing,
                 "accepted": accepted, "harness_loop_lag_ms": common.distribution(harness_lag, 1000)},
        "jobs_by_process": owners,
        "steady": {"loop_lag_ms": lag, "loop_lag_p99_ms_max": max((d.get("p99", 0) for d in lag.values()),
                                                                   default=None),
                   "initial_response_ms": common.distribution(probe_lat, 1000),
                   "initial_response_missing": probe_missing,
                   "polls_per_s": round(polls / sim_elapsed, 1) if sim_elapsed else None,
                   "claims_per_s": round(claims_steady / window, 2)},
    }
    phase("steady done")
    if kill:
        result["failover"] = await _failover(w, url, procs, lease)
    result["audit"] = await _finish_and_audit(w, url, total)
    return result


async def _failover(w: Any, url: str, procs: list[Proc], lease: float) -> dict[str, Any]:
    """`kill -9` the process holding the most unfinished jobs; time until none of them is still its own."""
    rows = await _q(url, "SELECT owner, COUNT(*) AS n FROM jobs WHERE owner IS NOT NULL "
                         "AND state NOT IN ('delivered', 'failed') GROUP BY owner ORDER BY n DESC")
    owner = rows[0]["owner"]
    victim = next(p for p in procs if owner.split("#")[0] == p.name)
    held = int(rows[0]["n"])
    phase(f"kill -9 {victim.name} holding {held}")
    victim.proc.kill()  # type: ignore[union-attr]  # SIGKILL: no clean-up, no lease given back
    killed_at = time.perf_counter()
    await victim.proc.wait()  # type: ignore[union-attr]
    left, deadline = held, killed_at + lease * 4 + 120
    while time.perf_counter() < deadline:
        left = int((await _q(url, "SELECT COUNT(*) AS n FROM jobs WHERE owner = $1 "
                                  "AND state NOT IN ('delivered', 'failed')", owner))[0]["n"])
        if left == 0:
            break
        await asyncio.sleep(0.1)
    return {"killed": victim.name, "jobs_held": held, "not_taken_over": left,
            "takeover_s": round(time.perf_counter() - killed_at, 2) if left == 0 else None}


async def _finish_and_audit(w: Any, url: str, total: int) -> dict[str, Any]:
    """End every render now, wait for every job to finish, and count what must be zero."""
    from storage.db import Database

    phase("every render ends; waiting for every job to finish")
    w.sim.state.configure({"pending_seconds": 0, "processing_seconds": 0.01})  # the queued ones too, when they start
    w.sim.state.clock.advance(7200)
    deadline = time.perf_counter() + 900
    done = 0
    while time.perf_counter() < deadline:
        done = int((await _q(url, "SELECT COUNT(*) AS n FROM jobs WHERE state IN ('delivered', 'failed')"))[0]["n"])
        if done >= total:
            break
        if int(time.perf_counter()) % 15 == 0:
            phase(f"finished {done}/{total}: " + ", ".join(
                f"{r['state']} {r['n']}" for r in await _q(url, "SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")))
        await asyncio.sleep(0.5)
    finished_s = round(time.perf_counter() - (deadline - 900), 1)
    states = {r["state"]: int(r["n"]) for r in await _q(url, "SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")}
    charges = await _q(url, "SELECT job_id, COUNT(*) AS n FROM ledger WHERE kind = 'charge' GROUP BY job_id "
                            "HAVING COUNT(*) > 1")
    jobs = [r["id"] for r in await _q(url, "SELECT id FROM jobs")]
    posts: dict[str, int] = {}
    bot_id = w.fake.bot_user.id
    for messages in w.fake.messages.values():
        for m in messages:
            if m.author_id == bot_id:
                for a in m.attachments:
                    if a.filename.startswith("sora-") and a.filename.endswith(".mp4"):
                        posts[a.filename] = posts.get(a.filename, 0) + 1
    db = await Database.open(url)
    try:
        problems = await db.ledger.verify()
    finally:
        await db.close()
    return {"jobs": len(jobs), "states": states, "finish_s": finished_s,
            "lost": len(jobs) - states.get("delivered", 0), "double_charges": len(charges),
            "second_posts": sum(n - 1 for n in posts.values() if n > 1),
            "second_upstream_tasks": max(0, len(w.sim.state.tasks) - len(jobs)),
            "ledger_problems": len(problems)}


async def run(quick: bool, window: float | None, lease: float | None) -> dict[str, Any]:
    from tests.pgserver import PgServer

    jobs = 60 if quick else 3000
    window = window or (4.0 if quick else 60.0)
    lease = lease or (2.0 if quick else 10.0)
    probe_n = 20 if quick else 100
    # The production poll schedule in a full run (the audit then waits for each job's next scheduled poll, a minute
    # or two); 20 times faster in a quick run, so the smoke test's jobs end within seconds.
    scale = 0.05 if quick else 1.0
    server = PgServer.start(durable=True)
    try:
        one = await layout(server, "one", 1, jobs, window, lease, probe_n, kill=False, time_scale=scale)
        three = await layout(server, "three", 3, jobs, window, lease, probe_n, kill=True, time_scale=scale)
    finally:
        server.stop()
    audits = [one["audit"], three["audit"]]
    sound = all(a["lost"] == a["double_charges"] == a["second_posts"] == a["second_upstream_tasks"]
                == a["ledger_problems"] == 0 for a in audits)
    taken = three["failover"]["not_taken_over"] == 0
    return {"layouts": [one, three], "time_scale": scale, "invariants_hold": sound and taken}


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(__doc__ or "", argv, extra=[
        ("--window", {"type": float, "default": None, "help": "steady-state seconds"}),
        ("--lease", {"type": float, "default": None, "help": "JOB_LEASE_SECONDS of the processes"})])
    common.quiet_logs()
    from tests.pgserver import find_bin_dir

    if find_bin_dir() is None:
        print("PostgreSQL server binaries not installed: nothing to measure")
        common.emit("scale_out", {"skipped": "no PostgreSQL"}, quick=args.quick)
        return 0
    r = asyncio.run(run(args.quick, args.window, args.lease))
    rows = []
    for x in r["layouts"]:
        s = x["steady"]
        lags = ", ".join(f"{k} {v.get('p99')}" for k, v in s["loop_lag_ms"].items())
        ramp = x["ramp"]
        rows.append([x["processes"], ramp["accepted"], ramp["seconds"], ramp["claims_per_s"],
                     ramp["initial_response_ms"].get("p99"), ramp["no_response"],
                     ramp["harness_loop_lag_ms"].get("max"), lags, s["initial_response_ms"].get("p99"),
                     s["polls_per_s"], s["claims_per_s"]])
    print(common.table("Jobs in flight on one PostgreSQL", [
        "processes", "jobs", "ramp (s)", "claims/s (ramp)", "ramp resp p99 (ms)", "unanswered",
        "harness lag max (ms)", "loop lag p99 per process (ms)", "initial resp p99 (ms)", "GET /v1/tasks per s",
        "claims/s (steady)"], rows))
    f, a = r["layouts"][1]["failover"], r["layouts"][1]["audit"]
    print()
    print(common.table("kill -9 of one of three processes mid-load", ["measure", "value"], [
        ["killed (jobs it held)", f"{f['killed']} ({f['jobs_held']})"],
        ["time until all its jobs were taken over (s)", f["takeover_s"]],
        ["lease (JOB_LEASE_SECONDS)", r["layouts"][1]["lease_s"]],
        ["jobs lost (must be 0)", a["lost"]], ["double charges (must be 0)", a["double_charges"]],
        ["second video posts (must be 0)", a["second_posts"]],
        ["second upstream tasks (must be 0)", a["second_upstream_tasks"]],
    ]))
    print(f"invariants {'hold' if r['invariants_hold'] else 'VIOLATED'}")
    common.emit("scale_out", r, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
