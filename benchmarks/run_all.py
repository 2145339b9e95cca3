"""Run every benchmark, one after another, each in its own process; print their tables and a summary.

    python benchmarks/run_all.py            # full sizes (several minutes)
    python benchmarks/run_all.py --quick    # small N, a smoke run that proves they work (CI)
    python benchmarks/run_all.py --only ledger polling

Exit status is 0 when every script ran and printed its JSON line, whatever the numbers: these are
benchmarks, not timed tests. `--json FILE` writes the collected results.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.common import JSON_PREFIX, machine, table  # noqa: E402

SCRIPTS = {
    "initial_response": "bench_initial_response.py",
    "polling": "bench_polling.py",
    "delivery_memory": "bench_delivery_memory.py",
    "ledger": "bench_ledger.py",
    "many_jobs": "bench_many_jobs.py",
    "scale_out": "bench_scale_out.py",
}


def run_one(name: str, quick: bool, timeout: float) -> tuple[dict | None, float, str]:
    cmd = [sys.executable, str(HERE / SCRIPTS[name]), *(["--quick"] if quick else [])]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=HERE.parent)
        out, err = done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        out, err = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""), "timeout"
    elapsed = time.perf_counter() - start
    result = None
    for line in out.splitlines():
        if line.startswith(JSON_PREFIX):
            result = json.loads(line[len(JSON_PREFIX):])
    text = "\n".join(line for line in out.splitlines() if not line.startswith(JSON_PREFIX))
    if result is None:
        text += f"\n[{name} printed no result]\n{err[-3000:]}"
    return result, elapsed, text


def summary_rows(results: dict[str, dict]) -> list[list[str]]:
    rows = []
    r = results.get("initial_response")
    if r:
        for x in r["rounds"]:
            rows.append([f"initial response, {x['at_once']} at once", "p99 < 250 ms (100 at once)",
                         f"p50 {x['p50']} / p95 {x['p95']} / p99 {x['p99']} / max {x['max']} ms"])
    r = results.get("polling")
    if r:
        for x in r["simulated"]:
            rows.append([f"polling, {x['job_minutes']:g}-minute job (simulated clock)", "<= 15 requests (10 min)",
                         f"{x['status_requests']} GET /v1/tasks, noticed {x['notice_delay_s']} s after completion"])
        d = r["callbacks"]["notice_delay_ms"]
        rows.append(["completion noticed, with callbacks (real time)", "< 1 s",
                     f"p50 {d['p50']} / max {d['max']} ms, {r['callbacks']['status_requests_max']} GET per job"])
    r = results.get("delivery_memory")
    if r:
        sizes = " vs ".join(f"{x['video_bytes'] / 1e6:g} MB: {x['hwm_peak_mb']} MB" for x in r["rows"])
        rows.append(["delivery peak memory (bot VmHWM)", "< 20 MB more for 100 MB",
                     f"+{r['extra_peak_mb']} MB ({sizes})"])
    r = results.get("ledger")
    if r:
        t = r["throughput"]
        rows.append([f"ledger, {t['pairs']} concurrent hold+settle pairs", "no overspend, no lost entry",
                     f"{t['pairs_per_s']} pairs/s ({t['ops_per_s']} ops/s); invariants "
                     f"{'hold' if r['invariants_hold'] else 'VIOLATED'}"])
    r = results.get("many_jobs")
    if r:
        s = r["steady"]
        rows.append([f"{r['jobs']} jobs in flight", "initial response p99 < 250 ms",
                     f"loop lag max {s['loop_lag_ms'].get('max')} ms (ramp {r['ramp']['loop_lag_ms'].get('max')} ms), "
                     f"CPU {s['cpu_percent_of_one_core']}% of a core, RSS {s['rss_max_mb']} MB, "
                     f"{s['status_requests_per_s']} GET/s, initial response p99 "
                     f"{s['initial_response_ms'].get('p99')} ms"])
    r = results.get("scale_out")
    if r and "layouts" in r:
        for x in r["layouts"]:
            s = x["steady"]
            rows.append([f"{x['jobs']} jobs in flight, {x['processes']} process(es) on one PostgreSQL",
                         "initial response p99 < 250 ms",
                         f"loop lag p99 max {s['loop_lag_p99_ms_max']} ms, initial response p99 "
                         f"{s['initial_response_ms'].get('p99')} ms, {x['ramp']['claims_per_s']} claims/s, "
                         f"{s['polls_per_s']} GET/s"])
        f, a = r["layouts"][-1]["failover"], r["layouts"][-1]["audit"]
        rows.append(["kill -9 of one of 3 processes mid-load", "0 lost, 0 double charges",
                     f"{f['jobs_held']} jobs taken over in {f['takeover_s']} s (lease {r['layouts'][-1]['lease_s']} s); "
                     f"lost {a['lost']}, double charges {a['double_charges']}, second posts {a['second_posts']}"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", choices=sorted(SCRIPTS), default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=None, help="per script, seconds")
    args = parser.parse_args(argv)
    timeout = args.timeout or (120.0 if args.quick else 1800.0)
    results: dict[str, dict] = {}
    failed = []
    for name in args.only or SCRIPTS:
        result, elapsed, text = run_one(name, args.quick, timeout)
        print(f"==== {name} ({elapsed:.1f} s)\n{text}\n", flush=True)
        if result is None:
            failed.append(name)
        else:
            results[name] = result
    m = machine()
    print(table(f"Summary ({'quick' if args.quick else 'full'}; {m['cores']} cores, {m['memory_gb']} GB, {m['cpu']})",
                ["benchmark", "target", "result"], summary_rows(results)))
    if args.json:
        args.json.write_text(json.dumps({"machine": m, "quick": args.quick, "results": results}, indent=2))
    if failed:
        print(f"did not produce results: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
