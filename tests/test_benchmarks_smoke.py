"""The benchmarks run (quick mode) and print their numbers. No thresholds: a slow machine must not fail this."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_benchmark_runs_in_quick_mode_and_prints_numbers(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--json", str(out), "--timeout", "100"],
        capture_output=True, text=True, timeout=110, check=False, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"initial_response", "polling", "delivery_memory", "ledger", "many_jobs"}
    assert results["initial_response"]["rounds"][0]["n"] > 0
    assert results["polling"]["simulated"][0]["status_requests"] > 0
    assert results["delivery_memory"]["rows"][-1]["hwm_peak_mb"] > 0
    assert results["ledger"]["throughput"]["pairs_per_s"] > 0
    assert results["many_jobs"]["steady"]["loop_lag_ms"]["n"] > 0
    assert "Summary" in done.stdout
