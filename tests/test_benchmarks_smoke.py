"""The benchmarks run (quick mode) and each one's own invariants hold. No timing thresholds: a slow machine must
not fail this; what a benchmark measures on the way (the ledger's books, every interaction answered, every job
delivered, every byte posted) must be true on any machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_benchmark_runs_in_quick_mode_and_its_invariants_hold(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--json", str(out), "--timeout", "100"],
        capture_output=True, text=True, timeout=240, check=False, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"initial_response", "polling", "delivery_memory", "ledger", "many_jobs", "scale_out"}

    ledger = results["ledger"]  # the books after concurrent holds and settlements
    throughput, overspend = ledger["throughput"], ledger["overspend"]
    assert ledger["invariants_hold"] is True, ledger
    assert throughput["verify_problems"] == [] and throughput["verify_after_all"] == []
    assert (throughput["second_settlements_accepted"], throughput["held_left"], throughput["negative_balances"],
            throughput["wrong_balances"], throughput["entry_count_mismatches"]) == (0, 0, 0, 0, 0)
    assert overspend["accepted"] == overspend["affordable"] and overspend["errors"] == []  # no overspend
    assert (overspend["available_after"], overspend["held_after"]) == (0, 0)

    for round_ in results["initial_response"]["rounds"]:  # every interaction answered, none refused (10062)
        assert round_["at_once"] > 0 and round_["no_response"] == 0 and round_["rejected"] == 0, round_

    polling = results["polling"]  # every job followed to the end, with and without callbacks
    assert polling["simulated"] and all(row["state"] == "delivered" for row in polling["simulated"])
    assert polling["callbacks"]["delivered"] == polling["callbacks"]["jobs"] > 0

    for row in results["delivery_memory"]["rows"]:  # every video posted whole
        assert row["posted_bytes"] == row["video_bytes"] > 0, row

    steady = results["many_jobs"]["steady"]  # the probe commands were all answered while jobs were followed
    assert steady["initial_response_missing"] == 0 and steady["tasks_in_flight"] > 0
    scale = results["scale_out"]  # several processes: nothing lost, charged or posted twice, all taken over
    if "skipped" not in scale:
        assert scale["invariants_hold"] is True, scale
        for layout in scale["layouts"]:
            audit = layout["audit"]
            assert audit["lost"] == audit["double_charges"] == audit["second_posts"] == 0, audit
            assert audit["second_upstream_tasks"] == audit["ledger_problems"] == 0, audit
            assert layout["ramp"]["no_response"] == 0 and layout["steady"]["initial_response_missing"] == 0
        failover = scale["layouts"][-1]["failover"]
        assert failover["jobs_held"] > 0 and failover["not_taken_over"] == 0, failover
    assert "Summary" in done.stdout
