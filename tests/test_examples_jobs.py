"""The durable-jobs examples run as their docstrings say (examples/jobs_*.py)."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

from tests.subprocess_helpers import ROOT, Child

EXAMPLES = ROOT / "examples"


def _copy(name: str, to: Path) -> None:
    shutil.copy(EXAMPLES / name, to / name)


def test_quickstart_runs_jobs_and_prints_results(tmp_path: Path) -> None:
    _copy("jobs_quickstart.py", tmp_path)
    code, output = Child("jobs_quickstart.py", cwd=tmp_path).finish(timeout=30)
    assert code == 0, output
    lines = output.strip().splitlines()
    assert lines[:3] == [
        "sent to Kim <kim@example.com>",
        "{'path': 'cat.png', 'width': 640}",
        "sent to Lee <lee@example.com>",
    ]
    assert lines[3].endswith("succeeded, progress 100% (pass 4 of 4)")
    assert (tmp_path / "underway-quickstart.db").exists()


def test_sync_producer_then_a_worker_runs_the_jobs(tmp_path: Path) -> None:
    _copy("jobs_from_sync_code.py", tmp_path)
    code, output = Child("jobs_from_sync_code.py", cwd=tmp_path).finish(timeout=30)
    assert code == 0, output
    assert output.count("(queued)") == 3

    worker = Child("-m", "underway", "worker", "jobs_from_sync_code:uw", cwd=tmp_path)
    worker.wait_for("started")
    listing = ""
    for _ in range(50):
        code, listing = Child(
            "-m", "underway", "jobs", "list", "jobs_from_sync_code:uw", "--json", cwd=tmp_path
        ).finish(timeout=30)
        jobs = [json.loads(line) for line in listing.splitlines() if line.startswith("{")]
        if len(jobs) == 3 and all(j["status"] == "succeeded" for j in jobs):
            break
    worker.signal(signal.SIGTERM)
    code, worker_output = worker.finish(timeout=30)
    assert code == 0, worker_output
    results = sorted(j["result"] for j in jobs)
    assert results == ["charged order 1: 19.99", "charged order 2: 5.00", "charged order 3: 120.00"]


def test_schedules_example_lists_its_three_schedules(tmp_path: Path) -> None:
    _copy("jobs_schedules.py", tmp_path)
    code, output = Child(
        "-m", "underway", "schedules", "jobs_schedules:uw", "--json", cwd=tmp_path
    ).finish(timeout=30)
    assert code == 0, output
    rows = {row["name"]: row for row in json.loads(output)}
    assert rows["jobs_schedules.refresh_exchange_rates"]["when"] == "every 10 s"
    assert rows["jobs_schedules.morning_report"]["when"] == "cron 0 9 * * MON-FRI (Asia/Seoul)"
    assert rows["jobs_schedules.daily_cleanup"]["misfire"] == "skip"
    assert all(row["last_tick"] is None for row in rows.values())
