"""Crash safety on SQLite: SIGKILLed workers lose no job; duplicates stay within what was in flight.

Tasks of ``tests.queue_apps.basic`` append ``run JOB_ID PID`` to a log with O_APPEND before
they return, so a run that happened but whose outcome never reached the store (the worker
died first) shows up as a second line for the same job.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import orjson

from tests.queue_apps.harness import WorkerProcess, backend_url, read_lines, sql
from underway import Underway
from underway.job import NewJob

JOBS = 2000
CONCURRENCY = 20
LEASE = "1.5"
KILL_AT = (0.2, 0.45, 0.7)  # fractions of the jobs done when the worker is killed


def count(url: str, status: str) -> int:
    ((n,),) = sql(url, "SELECT count(*) FROM jobs WHERE status = ?", (status,))
    return int(n)


def wait_for_count(url: str, status: str, at_least: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while count(url, status) < at_least:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"only {count(url, status)} job(s) {status} after {timeout} s; wanted {at_least}"
            )
        time.sleep(0.05)


async def enqueue(url: str, jobs: int, task: str, args: list[object]) -> list[str]:
    async with Underway(url) as uw:
        backend = await uw.backend()
        payload = orjson.dumps({"args": args, "kwargs": {}})
        records = await backend.enqueue_many(
            [NewJob(f"tests.queue_apps.basic.{task}", payload, max_attempts=6) for _ in range(jobs)]
        )
    return [r.id for r in records]


def test_sigkilled_workers_lose_no_job(tmp_path: Path) -> None:
    url = backend_url("sqlite", tmp_path)
    log = tmp_path / "runs.log"
    ids = asyncio.run(enqueue(url, JOBS, "log_id", [1]))
    options = ("--lease", LEASE, "--concurrency", str(CONCURRENCY), "--grace", "5")
    started = time.monotonic()
    in_flight: list[int] = []
    for n, fraction in enumerate(KILL_AT):
        worker = WorkerProcess.worker(
            "tests.queue_apps.basic:uw", *options, url=url, log=log, output=tmp_path / f"w{n}.out"
        )
        wait_for_count(url, "succeeded", int(JOBS * fraction), timeout=20)
        worker.kill()
        # Leased by this worker and not released when it died: only these can run twice.
        # (Jobs of an earlier killed worker may still wait for the reaper; not counted.)
        owner = f"%:{worker.process.pid}:%"
        ((held,),) = sql(
            url,
            "SELECT count(*) FROM jobs WHERE status = 'running' AND lease_owner LIKE ?",
            (owner,),
        )
        in_flight.append(int(held))
    last = WorkerProcess.worker(
        "tests.queue_apps.basic:uw", *options, url=url, log=log, output=tmp_path / "last.out"
    )
    with last:
        wait_for_count(url, "succeeded", JOBS, timeout=25)
    elapsed = time.monotonic() - started

    statuses = dict(sql(url, "SELECT status, count(*) FROM jobs GROUP BY status"))
    runs = Counter(line.split()[1] for line in read_lines(log) if line.startswith("run "))
    duplicates = sum(n - 1 for n in runs.values())
    print(
        f"\ncrash test: {JOBS} jobs, {len(KILL_AT)} SIGKILLs, in flight at the kills "
        f"{in_flight} (sum {sum(in_flight)}), {sum(runs.values())} runs, "
        f"{duplicates} duplicate(s), {elapsed:.1f} s"
    )
    assert statuses == {"succeeded": JOBS}, statuses
    assert set(runs) == set(ids)  # every job ran; none was lost
    assert duplicates <= sum(in_flight)
    assert max(in_flight) <= 2 * CONCURRENCY  # running, or finished and not yet released
    assert elapsed < 40


def test_a_killed_workers_job_runs_again_elsewhere_after_the_lease(tmp_path: Path) -> None:
    url = backend_url("sqlite", tmp_path)
    log = tmp_path / "runs.log"
    first = WorkerProcess.worker(
        "tests.queue_apps.basic:uw", "--lease", "1", url=url, log=log, output=tmp_path / "a.out"
    )
    (job_id,) = asyncio.run(enqueue(url, 1, "nap_once", [60, 0.05]))
    deadline = time.monotonic() + 10
    while not any(line.startswith(f"start {job_id}") for line in read_lines(log)):
        assert time.monotonic() < deadline, first.output()
        time.sleep(0.02)
    first.kill()
    killed_at = time.monotonic()
    with WorkerProcess.worker(
        "tests.queue_apps.basic:uw", "--lease", "1", url=url, log=log, output=tmp_path / "b.out"
    ) as second:
        wait_for_count(url, "succeeded", 1, timeout=10)
        recovered_after = time.monotonic() - killed_at
        assert "Recovered 1 job(s) whose worker stopped heartbeating" in second.output()
    starts = [line.split() for line in read_lines(log) if line.startswith("start ")]
    assert [s[1] for s in starts] == [job_id, job_id]
    assert starts[0][2] == str(first.process.pid)
    assert starts[1][2] == str(second.process.pid)
    ((attempts, token),) = sql(url, "SELECT attempts, lease_token FROM jobs")
    assert (attempts, token) == (2, 2)
    assert recovered_after < 6  # about one lease, plus a worker's start-up
