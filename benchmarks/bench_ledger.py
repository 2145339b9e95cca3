"""Target: 1,000 concurrent hold/settle pairs on SQLite without a single overspend or lost entry.

One SQLite file, opened like the bot opens it (`storage.Database`: one writer connection, BEGIN IMMEDIATE).
Phase 1: N asyncio tasks start together; each holds credits for a job (`db.jobs.create_with_hold`, which
checks every quota) and then settles it (`db.ledger.settle`, or `release` for every tenth). Then every
settlement is attempted a second time, concurrently (each must be refused), and the books are checked:
`db.ledger.verify() == []`, held == 0, each balance equals its grants minus its charges, entry counts exact.
Phase 2 (overspend): one member can afford K jobs; 50 concurrent holds must yield exactly K.

    python benchmarks/bench_ledger.py [--quick]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

GUILD = 1
COST = 100


async def _hold(db, user_id: int):
    from storage.models import NewJob

    return await db.jobs.create_with_hold(NewJob(guild_id=GUILD, channel_id=10, user_id=user_id, prompt="a fox",
                                                 duration=4, cost=COST))


async def throughput(db, pairs: int) -> dict:
    members = max(1, pairs // 10)  # 10 jobs in progress per member, under max_jobs_per_member
    gate = asyncio.Event()
    hold_lat: list[float] = []
    settle_lat: list[float] = []

    async def pair(i: int) -> tuple[str, bool]:
        await gate.wait()
        t0 = time.perf_counter()
        job = await _hold(db, 1000 + i % members)
        t1 = time.perf_counter()
        release = i % 10 == 9
        done = await (db.ledger.release(job.id, "bench") if release else db.ledger.settle(job.id))
        hold_lat.append(t1 - t0)
        settle_lat.append(time.perf_counter() - t1)
        assert done, "first settlement refused"
        return job.id, release

    tasks = [asyncio.create_task(pair(i)) for i in range(pairs)]
    await asyncio.sleep(0)
    start = time.perf_counter()
    gate.set()
    results = await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start

    seconds = await asyncio.gather(*(db.ledger.settle(job_id) for job_id, _ in results), return_exceptions=True)
    double = sum(1 for s in seconds if s is True)

    problems = await db.ledger.verify()
    charged = dict.fromkeys(range(1000, 1000 + members), 0)
    for i, (_, release) in enumerate(results):
        if not release:
            charged[1000 + i % members] += COST
    wrong_balance = 0
    negative = 0
    held_total = 0
    for uid, spent in charged.items():
        bal = await db.ledger.balance(GUILD, uid)
        held_total += bal.held
        negative += bal.available < 0 or bal.held < 0
        wrong_balance += bal.available != common.GENEROUS["starting_credits"] - spent
    counts = {r["kind"]: r["n"] for r in await db.fetchall("SELECT kind, COUNT(*) AS n FROM ledger GROUP BY kind")}
    releases = sum(1 for _, r in results if r)
    lost = (counts.get("hold", 0) != pairs) + (counts.get("charge", 0) != pairs - releases) + (
        counts.get("release", 0) != releases)
    return {
        "pairs": pairs, "members": members, "seconds": round(elapsed, 3),
        "pairs_per_s": round(pairs / elapsed, 1), "ops_per_s": round(2 * pairs / elapsed, 1),
        "hold_ms": common.distribution(hold_lat, 1000), "settle_ms": common.distribution(settle_lat, 1000),
        "second_settlements_accepted": double, "verify_problems": problems, "held_left": held_total,
        "negative_balances": negative, "wrong_balances": wrong_balance, "entry_count_mismatches": lost,
        "entries": counts,
    }


async def overspend(db, affordable: int = 7, attempts: int = 50) -> dict:
    from storage.errors import QuotaRefused

    user = 999
    await db.ledger.set_balance(GUILD, user, affordable * COST, None, "bench")
    results = await asyncio.gather(*(_hold(db, user) for _ in range(attempts)), return_exceptions=True)
    accepted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, QuotaRefused)]
    other = [r for r in results if isinstance(r, BaseException) and not isinstance(r, QuotaRefused)]
    await asyncio.gather(*(db.ledger.settle(j.id) for j in accepted))
    bal = await db.ledger.balance(GUILD, user)
    return {"affordable": affordable, "attempts": attempts, "accepted": len(accepted), "refused": len(refused),
            "errors": [repr(e) for e in other[:3]], "available_after": bal.available, "held_after": bal.held}


async def run(quick: bool) -> dict:
    from storage.db import Database

    pairs = 100 if quick else 1000
    with common.workdir("ledger") as tmp:
        db = await Database.open(tmp / "ledger.db")
        try:
            await db.guilds.update(GUILD, **common.GENEROUS)
            t = await throughput(db, pairs)
            o = await overspend(db)
            t["verify_after_all"] = await db.ledger.verify()
        finally:
            await db.close()
    ok = (not t["verify_problems"] and not t["verify_after_all"] and t["second_settlements_accepted"] == 0
          and t["held_left"] == 0 and t["negative_balances"] == 0 and t["wrong_balances"] == 0
          and t["entry_count_mismatches"] == 0 and o["accepted"] == o["affordable"] and not o["errors"]
          and o["available_after"] == 0 and o["held_after"] == 0)
    return {"throughput": t, "overspend": o, "invariants_hold": ok}


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(__doc__ or "", argv)
    common.quiet_logs()
    r = asyncio.run(run(args.quick))
    t, o = r["throughput"], r["overspend"]
    print(common.table("Credit ledger on one SQLite file (concurrent hold + settle pairs)",
                       ["pairs", "seconds", "pairs/s", "ops/s", "hold p99 (ms)", "settle p99 (ms)"],
                       [[t["pairs"], t["seconds"], t["pairs_per_s"], t["ops_per_s"], t["hold_ms"]["p99"],
                         t["settle_ms"]["p99"]]]))
    print()
    print(common.table("Invariants afterwards", ["check", "result"], [
        ["verify() problems", len(t["verify_problems"]) + len(t["verify_after_all"])],
        ["second settlements accepted", t["second_settlements_accepted"]],
        ["credits still held", t["held_left"]],
        ["negative / wrong balances", f"{t['negative_balances']} / {t['wrong_balances']}"],
        ["ledger entries (hold/charge/release)",
         f"{t['entries'].get('hold', 0)}/{t['entries'].get('charge', 0)}/{t['entries'].get('release', 0)}"],
        [f"overspend: {o['attempts']} holds, {o['affordable']} affordable", f"{o['accepted']} accepted"],
    ]))
    print(f"invariants: {'all hold' if r['invariants_hold'] else 'VIOLATED'}")
    common.emit("ledger", r, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
