"""Target: 1,000 concurrent hold/settle pairs without a single overspend or lost entry, on SQLite and PostgreSQL.

Each database is opened like the bot opens it (`storage.Database`): SQLite is one file (one writer
connection, BEGIN IMMEDIATE); PostgreSQL is an asyncpg pool (10 connections) on a throwaway local server
started for the run with fsync on (tests/pgserver.py), or the database BENCH_DATABASE_URL names.
Phase 1: N asyncio tasks start together; each holds credits for a job (`db.jobs.create_with_hold`, which
checks every quota) and then settles it (`settle`, or `release` for every tenth, from tests/storage/ledger_ops.py). Then every
settlement is attempted a second time, concurrently (each must be refused), and the books are checked:
`db.ledger.verify() == []`, held == 0, each balance equals its grants minus its charges, entry counts exact.
Phase 2 (overspend): one member can afford K jobs; 50 concurrent holds must yield exactly K.
Phase 3 (PostgreSQL only): the same N pairs from 3 processes at once (each its own pool, the same members),
then the same checks.

    python benchmarks/bench_ledger.py [--quick] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common
from tests.storage import ledger_ops

GUILD = 1
COST = 100
PROCESSES = 3


async def _hold(db, user_id: int):
    from storage.models import NewJob

    return await db.jobs.create_with_hold(NewJob(guild_id=GUILD, channel_id=10, user_id=user_id, prompt="a fox",
                                                 duration=4, cost=COST))


def _members(pairs: int) -> int:
    return max(1, pairs // 10)  # 10 jobs in progress per member, under max_jobs_per_member


async def _pairs(db, indices: range, members: int, gate: asyncio.Event) -> dict:
    """Hold then settle (every tenth: release) for each index, all waiting on `gate`; timings and results."""
    hold_lat: list[float] = []
    settle_lat: list[float] = []

    async def pair(i: int) -> tuple[str, bool]:
        await gate.wait()
        t0 = time.perf_counter()
        job = await _hold(db, 1000 + i % members)
        t1 = time.perf_counter()
        release = i % 10 == 9
        done = await (ledger_ops.release(db, job.id, "bench") if release else ledger_ops.settle(db, job.id))
        hold_lat.append(t1 - t0)
        settle_lat.append(time.perf_counter() - t1)
        assert done, "first settlement refused"
        return job.id, release

    tasks = [asyncio.create_task(pair(i)) for i in indices]
    await asyncio.sleep(0)
    start = time.time()
    gate.set()
    results = await asyncio.gather(*tasks)
    return {"start": start, "end": time.time(), "results": results, "hold_lat": hold_lat,
            "settle_lat": settle_lat}


async def _books(db, results: list[tuple[str, bool]], members: int) -> dict:
    """Retry every settlement (all must be refused), then check every balance and entry count."""
    pairs = len(results)
    seconds = await asyncio.gather(*(ledger_ops.settle(db, job_id) for job_id, _ in results), return_exceptions=True)
    double = sum(1 for s in seconds if s is True)
    problems = await db.ledger.verify()
    charged = dict.fromkeys(range(1000, 1000 + members), 0)
    for i, (_, release) in enumerate(results):
        if not release:
            charged[1000 + i % members] += COST
    wrong_balance = negative = held_total = 0
    for uid, spent in charged.items():
        bal = await db.ledger.balance(GUILD, uid)
        held_total += bal.held
        negative += bal.available < 0 or bal.held < 0
        wrong_balance += bal.available != common.GENEROUS["starting_credits"] - spent
    counts = {r["kind"]: int(r["n"]) for r in await db.fetchall(
        "SELECT kind, COUNT(*) AS n FROM ledger WHERE kind IN ('hold', 'charge', 'release') GROUP BY kind")}
    releases = sum(1 for _, r in results if r)
    lost = (counts.get("hold", 0) != pairs) + (counts.get("charge", 0) != pairs - releases) + (
        counts.get("release", 0) != releases)
    return {"second_settlements_accepted": double, "verify_problems": problems, "held_left": held_total,
            "negative_balances": negative, "wrong_balances": wrong_balance, "entry_count_mismatches": lost,
            "entries": counts}


async def throughput(db, pairs: int) -> dict:
    members = _members(pairs)
    run = await _pairs(db, range(pairs), members, asyncio.Event())
    elapsed = run["end"] - run["start"]
    return {
        "pairs": pairs, "members": members, "seconds": round(elapsed, 3),
        "pairs_per_s": round(pairs / elapsed, 1), "ops_per_s": round(2 * pairs / elapsed, 1),
        "hold_ms": common.distribution(run["hold_lat"], 1000), "settle_ms": common.distribution(run["settle_lat"], 1000),
        **await _books(db, run["results"], members),
    }


async def overspend(db, affordable: int = 7, attempts: int = 50) -> dict:
    from storage.errors import QuotaRefused

    user = 999
    await db.ledger.set_balance(GUILD, user, affordable * COST, None, "bench")
    results = await asyncio.gather(*(_hold(db, user) for _ in range(attempts)), return_exceptions=True)
    accepted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, QuotaRefused)]
    other = [r for r in results if isinstance(r, BaseException) and not isinstance(r, QuotaRefused)]
    await asyncio.gather(*(ledger_ops.settle(db, j.id) for j in accepted))
    bal = await db.ledger.balance(GUILD, user)
    return {"affordable": affordable, "attempts": attempts, "accepted": len(accepted), "refused": len(refused),
            "errors": [repr(e) for e in other[:3]], "available_after": bal.available, "held_after": bal.held}


async def worker(url: str, first: int, count: int, members: int, go: Path) -> None:
    """One of the 3 processes: its own pool, its share of the pairs, released by the parent's go file."""
    from storage.db import Database

    common.quiet_logs()
    db = await Database.open(url)
    try:
        print("ready", flush=True)
        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(go.exists):  # bounded wait for the parent's start signal
            if time.monotonic() > deadline:
                raise TimeoutError("no start signal")
            await asyncio.sleep(0.005)
        gate = asyncio.Event()
        run = await _pairs(db, range(first, first + count), members, gate)
    finally:
        await db.close()
    print(json.dumps({k: run[k] for k in ("start", "end", "results", "hold_lat", "settle_lat")}), flush=True)


async def processes(db, url: str, pairs: int, tmp: Path) -> dict:
    """The same pairs from PROCESSES processes at once, on the same members; then the same checks."""
    members = _members(pairs)
    go = tmp / "go"
    shares = [pairs // PROCESSES + (1 if k < pairs % PROCESSES else 0) for k in range(PROCESSES)]
    firsts = [sum(shares[:k]) for k in range(PROCESSES)]
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--worker", url, str(first), str(share), str(members), str(go),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=common.ROOT,
        env={**os.environ, "PYTHONPATH": str(common.ROOT)},
    ) for first, share in zip(firsts, shares, strict=True)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert line.strip() == b"ready", line
        go.touch()
        outputs = [await asyncio.wait_for(proc.communicate(), 300) for proc in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    runs = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()[-3000:]
        runs.append(json.loads(out.decode().strip().splitlines()[-1]))
    elapsed = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    # _books() maps result i to member 1000 + i % members: the runs in order of their first index, each in
    # its own index order (gather keeps it), are the global order.
    ordered = [(str(job_id), bool(release)) for r in runs for job_id, release in r["results"]]
    assert len(ordered) == pairs
    return {
        "pairs": pairs, "processes": PROCESSES, "members": members, "seconds": round(elapsed, 3),
        "pairs_per_s": round(pairs / elapsed, 1), "ops_per_s": round(2 * pairs / elapsed, 1),
        "hold_ms": common.distribution([x for r in runs for x in r["hold_lat"]], 1000),
        "settle_ms": common.distribution([x for r in runs for x in r["settle_lat"]], 1000),
        **await _books(db, ordered, members),
    }


def _sound(t: dict) -> bool:
    return (not t["verify_problems"] and t["second_settlements_accepted"] == 0 and t["held_left"] == 0
            and t["negative_balances"] == 0 and t["wrong_balances"] == 0 and t["entry_count_mismatches"] == 0)


def _no_overspend(o: dict) -> bool:
    return (o["accepted"] == o["affordable"] and not o["errors"] and o["available_after"] == 0
            and o["held_after"] == 0)


async def _fresh(db) -> None:
    await db.guilds.update(GUILD, **common.GENEROUS)


async def measure(db, pairs: int) -> tuple[dict, dict]:
    """The pairs and the overspend race on one freshly opened database, which this closes."""
    try:
        await _fresh(db)
        t = await throughput(db, pairs)
        o = await overspend(db)
        t["verify_after_all"] = await db.ledger.verify()
    finally:
        await db.close()
    return t, o


async def run_sqlite(pairs: int) -> dict:
    from storage.db import Database

    with common.workdir("ledger") as tmp:
        t, o = await measure(await Database.open(tmp / "ledger.db"), pairs)
    return {"throughput": t, "overspend": o,
            "invariants_hold": _sound(t) and not t["verify_after_all"] and _no_overspend(o)}


async def run_postgres(pairs: int) -> dict:
    from storage.db import Database
    from tests.pgserver import PgServer, create_database

    given = os.environ.get("BENCH_DATABASE_URL")
    server = None if given else PgServer.start(durable=True)
    try:
        with common.workdir("ledger-pg") as tmp:
            async def database(name: str) -> str:
                if given:  # an operator's database: the benchmark wipes nothing, so use an empty one
                    return given
                assert server is not None
                return await create_database(server, name)

            t, o = await measure(await Database.open(await database("bench_one")), pairs)
            if given:
                p = {"skipped": "BENCH_DATABASE_URL is one database; the 3-process run needs a second, empty one"}
                ok_p = True
            else:
                url = await database("bench_three")
                db = await Database.open(url)
                try:
                    await _fresh(db)
                    p = await processes(db, url, pairs, tmp)
                    p["verify_after_all"] = await db.ledger.verify()
                finally:
                    await db.close()
                ok_p = _sound(p) and not p["verify_after_all"]
    finally:
        if server is not None:
            server.stop()
    return {"throughput": t, "overspend": o, "processes": p,
            "invariants_hold": _sound(t) and not t["verify_after_all"] and _no_overspend(o) and ok_p}


def _postgres_available() -> bool:
    from tests.pgserver import find_bin_dir

    return bool(os.environ.get("BENCH_DATABASE_URL")) or find_bin_dir() is not None


async def run(quick: bool, backend: str = "both") -> dict:
    pairs = 100 if quick else 1000
    result: dict = {}
    if backend in ("sqlite", "both"):
        result.update(await run_sqlite(pairs))  # top level: what run_all.py's summary reads
    if backend in ("postgresql", "both"):
        if _postgres_available():
            result["postgresql"] = await run_postgres(pairs)
        else:
            result["postgresql"] = {"skipped": "no PostgreSQL server binaries (apt-get install postgresql)"}
    result["invariants_hold"] = all(r.get("invariants_hold", True) for r in (result, result.get("postgresql", {})))
    return result


def _row(name: str, t: dict) -> list:
    return [name, t["pairs"], t["seconds"], t["pairs_per_s"], t["ops_per_s"], t["hold_ms"]["p99"],
            t["settle_ms"]["p99"]]


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--worker":
        url, first, count, members, go = sys.argv[2:7]
        asyncio.run(worker(url, int(first), int(count), int(members), Path(go)))
        return 0
    args = common.parse_args(__doc__ or "", argv, extra=[
        ("--backend", {"choices": ("sqlite", "postgresql", "both"), "default": "both"}),
    ])
    common.quiet_logs()
    r = asyncio.run(run(args.quick, args.backend))
    pg = r.get("postgresql", {})
    rows = []
    if "throughput" in r:
        rows.append(_row("SQLite, 1 process", r["throughput"]))
    if "throughput" in pg:
        rows.append(_row("PostgreSQL, 1 process (pool of 10)", pg["throughput"]))
    if "pairs_per_s" in pg.get("processes", {}):
        rows.append(_row(f"PostgreSQL, {PROCESSES} processes at once", pg["processes"]))
    print(common.table("Credit ledger (concurrent hold + settle pairs)",
                       ["database", "pairs", "seconds", "pairs/s", "ops/s", "hold p99 (ms)", "settle p99 (ms)"],
                       rows))
    if "skipped" in pg or "skipped" in pg.get("processes", {}):
        print(f"PostgreSQL: {pg.get('skipped') or pg['processes']['skipped']}")
    print()
    checks = []
    for name, t, o in (("SQLite", r.get("throughput"), r.get("overspend")),
                       ("PostgreSQL", pg.get("throughput"), pg.get("overspend")),
                       (f"PostgreSQL {PROCESSES} processes", pg.get("processes"), None)):
        if not t or "entries" not in t:
            continue
        e = t["entries"]
        checks += [
            [name, "verify() problems", len(t["verify_problems"]) + len(t.get("verify_after_all", []))],
            [name, "second settlements accepted", t["second_settlements_accepted"]],
            [name, "credits still held / negative / wrong balances",
             f"{t['held_left']} / {t['negative_balances']} / {t['wrong_balances']}"],
            [name, "ledger entries (hold/charge/release)",
             f"{e.get('hold', 0)}/{e.get('charge', 0)}/{e.get('release', 0)}"],
        ]
        if o:
            checks.append([name, f"overspend: {o['attempts']} holds, {o['affordable']} affordable",
                           f"{o['accepted']} accepted"])
    print(common.table("Invariants afterwards", ["database", "check", "result"], checks))
    print(f"invariants: {'all hold' if r['invariants_hold'] else 'VIOLATED'}")
    common.emit("ledger", r, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
