"""Smoke test of the field benchmark (``bench/run_all.sh --quick``): in CI, or on request.

It installs every peer into ``.venv-bench`` on first use (a minute or two with pip's
cache, more without) and starts private Redis and PostgreSQL servers, so on a developer's
machine it runs only when ``UNDERWAY_BENCH_SMOKE=1``; with ``CI=true`` it always runs. It
asserts that every system ran every workload of the quick mode, and that the round-trip
floors were measured, never how fast: timings belong to the benchmark's report, not to a
test.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNDERWAY_SYSTEMS = ("underway-sqlite", "underway-redis", "underway-postgres")


@pytest.mark.timeout(1200)
def test_quick_benchmark_runs_every_system(tmp_path: Path) -> None:
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if os.environ.get("UNDERWAY_BENCH_SMOKE") != "1" and not in_ci:
        pytest.skip(
            "the benchmark smoke test installs the peers into .venv-bench and takes minutes; "
            "set UNDERWAY_BENCH_SMOKE=1 to run it (CI=true runs it always)"
        )
    report_path = tmp_path / "field.json"
    done = subprocess.run(
        ["bash", "bench/run_all.sh", "--quick", f"--json={report_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1100,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "## Job queues against the field" in done.stdout
    report = json.loads(report_path.read_text())
    assert report["skipped"] == {}, report["skipped"]
    assert report["errors"] == [], report["errors"]
    ran = {(run["workload"], run["system"]) for run in report["runs"]}
    for system in report["systems"]:
        for workload in ("throughput", "enqueue_single", "latency"):
            assert (workload, system) in ran
    for system in UNDERWAY_SYSTEMS:
        for workload in ("enqueue_bulk", "saturation", "scale2", "memory"):
            assert (workload, system) in ran
    assert {run["system"] for run in report["runs"]} >= set(UNDERWAY_SYSTEMS)
    # The floors under one-at-a-time enqueues, and the CPU each drain used.
    assert "## One job at a time: the round trip underneath" in done.stdout
    assert "bare asyncio protocol: PING" in done.stdout
    for run in report["runs"]:
        if run["workload"] == "throughput":
            assert {"workers_cpu_pct", "server_cpu_pct", "machine_busy_pct"} <= set(run["metrics"])
