"""The operator's CLI on a SQLite store: underway jobs list|show|retry|cancel|purge|watch."""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from tests.queue_apps.harness import ROOT, WorkerProcess, backend_url, read_lines, running, sql
from underway import JobFailed
from underway.backends.base import Backend
from underway.cli import main
from underway.job import JobRecord

APP = "tests.queue_apps.basic:uw"


@dataclass
class Store:
    """The test's store, the app module the CLI loads, and the jobs planted in it."""

    url: str
    module: ModuleType
    ids: dict[str, str]


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def json_lines(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.output.splitlines() if line.strip()]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A store with one job in each state: succeeded, dead, queued, scheduled, running."""
    url = backend_url("sqlite", tmp_path)
    monkeypatch.setenv("UNDERWAY_URL", url)
    monkeypatch.setenv("UNDERWAY_TEST_LOG", str(tmp_path / "executions.log"))
    monkeypatch.chdir(ROOT)
    # A fresh import, so that the app module reads this test's URL.
    monkeypatch.delitem(sys.modules, "tests.queue_apps.basic", raising=False)
    module = importlib.import_module("tests.queue_apps.basic")
    ids = asyncio.run(_plant(module))
    return Store(url, module, ids)


async def _plant(module: Any) -> dict[str, str]:
    uw = module.uw
    try:
        done = await module.nap.enqueue(0)
        dead = await module.fail.enqueue("the disk is full")
        async with running(uw):
            await done.result(timeout=5)
            with pytest.raises(JobFailed):
                await dead.result(timeout=5)
        queued = await module.nap.options(queue="slow").enqueue(1.5)
        scheduled = await module.nap.options(delay=3600).enqueue(2)
        backend = await uw.backend()
        running_job = await module.halfway.enqueue("step 2 of 4")
        (taken,) = await backend.acquire(["default"], "cli-test-worker", 1, timedelta(hours=1))
        assert taken.id == running_job.id
        assert await backend.set_progress(taken.lease, 0.5, "step 2 of 4")
        return {
            "succeeded": done.id,
            "dead": dead.id,
            "queued": queued.id,
            "scheduled": scheduled.id,
            "running": running_job.id,
        }
    finally:
        await uw.close()


def test_jobs_list_json_gives_every_job_newest_first(store: Store) -> None:
    rows = json_lines(cli("jobs", "list", APP, "--json"))
    assert [r["id"] for r in rows] == [
        store.ids[s] for s in ("running", "scheduled", "queued", "dead", "succeeded")
    ]
    by_id = {r["id"]: r for r in rows}
    done = by_id[store.ids["succeeded"]]
    assert done["status"] == "succeeded"
    assert done["task_name"] == "tests.queue_apps.basic.nap"
    assert done["payload"] == {"args": [0], "kwargs": {}}
    assert done["result"] == store.ids["succeeded"]  # nap returns its job id
    assert done["finished_at"] is not None
    dead = by_id[store.ids["dead"]]
    assert dead["status"] == "dead"
    assert dead["error"] == "RuntimeError: the disk is full"
    assert "retries exhausted" in dead["dead_reason"]
    running_job = by_id[store.ids["running"]]
    assert (running_job["progress"], running_job["progress_message"]) == (0.5, "step 2 of 4")
    assert by_id[store.ids["scheduled"]]["status"] == "scheduled"


def test_jobs_list_filters_and_pages(store: Store) -> None:
    only_dead = json_lines(cli("jobs", "list", APP, "--json", "--status", "dead"))
    assert [r["id"] for r in only_dead] == [store.ids["dead"]]
    slow = json_lines(cli("jobs", "list", APP, "--json", "--queue", "slow"))
    assert [r["id"] for r in slow] == [store.ids["queued"]]
    naps = json_lines(cli("jobs", "list", APP, "--json", "--task", "tests.queue_apps.basic.nap"))
    assert len(naps) == 3
    page = json_lines(cli("jobs", "list", APP, "--json", "--limit", "2", "--offset", "1"))
    assert [r["id"] for r in page] == [store.ids["scheduled"], store.ids["queued"]]
    bad = CliRunner().invoke(main, ["jobs", "list", APP, "--status", "lost"])
    assert bad.exit_code == 2
    assert "'lost' is not one of" in bad.output


def test_jobs_list_shows_counts_and_a_table(store: Store) -> None:
    result = cli("jobs", "list", APP)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == ("default: 1 dead, 1 running, 1 scheduled, 1 succeeded; slow: 1 queued")
    assert lines[1].split() == ["ID", "TASK", "QUEUE", "STATUS", "TRIES", "ENQUEUED", "PROGRESS"]
    running_row = next(line for line in lines if store.ids["running"] in line)
    assert "[######......]  50% step 2 of 4" in running_row
    assert "1/4" in running_row  # first attempt of four (retries=3)


def test_jobs_show_json_and_text(store: Store) -> None:
    result = cli("jobs", "show", APP, store.ids["dead"], "--json")
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.output)
    assert data["id"] == store.ids["dead"]
    assert data["status"] == "dead"
    assert data["payload"] == {"args": ["the disk is full"], "kwargs": {}}
    assert "raise RuntimeError(message)" in data["traceback"]

    text = cli("jobs", "show", APP, store.ids["dead"]).output
    assert "status: dead" in text
    assert "dead reason: retries exhausted" in text
    assert 'arguments: {"args":["the disk is full"],"kwargs":{}}' in text
    assert "error: RuntimeError: the disk is full" in text
    assert "Traceback (most recent call last)" in text

    progress = cli("jobs", "show", APP, store.ids["running"]).output
    assert "progress: [######......]  50% step 2 of 4" in progress
    assert "lease owner: cli-test-worker" in progress


def test_jobs_show_an_unknown_id_fails(store: Store) -> None:
    result = CliRunner().invoke(main, ["jobs", "show", APP, "nope"])
    assert result.exit_code == 1
    assert "no job with id 'nope'" in result.output


def test_jobs_retry_requeues_a_dead_job_and_refuses_others(store: Store) -> None:
    result = cli("jobs", "retry", APP, store.ids["dead"])
    assert result.exit_code == 0, result.output
    assert result.output == f"{store.ids['dead']}: retried\n"
    assert sql(
        store.url, "SELECT status, attempts FROM jobs WHERE id = ?", (store.ids["dead"],)
    ) == [("queued", 0)]
    refused = CliRunner().invoke(main, ["jobs", "retry", APP, store.ids["succeeded"], "nope"])
    assert refused.exit_code == 1
    assert f"{store.ids['succeeded']}: not retried, it is succeeded" in refused.output
    assert "nope: no such job" in refused.output


def test_jobs_cancel_waiting_and_running_jobs(store: Store) -> None:
    result = cli("jobs", "cancel", APP, store.ids["queued"], store.ids["running"])
    assert result.exit_code == 0, result.output
    assert f"{store.ids['queued']}: cancelled\n" in result.output
    assert f"{store.ids['running']}: cancelled (cancel requested; its worker stops it)" in (
        result.output
    )
    rows = dict(
        sql(
            store.url,
            "SELECT id, status || ':' || cancel_requested FROM jobs WHERE id IN (?, ?)",
            (store.ids["queued"], store.ids["running"]),
        )
    )
    assert rows == {store.ids["queued"]: "cancelled:0", store.ids["running"]: "running:1"}
    refused = CliRunner().invoke(main, ["jobs", "cancel", APP, store.ids["succeeded"]])
    assert refused.exit_code == 1
    assert "not cancelled, it is succeeded" in refused.output


def test_jobs_purge_deletes_finished_jobs_by_age_and_status(store: Store) -> None:
    kept = cli("jobs", "purge", APP)  # default: finished more than 7 days ago
    assert kept.output == "purged 0 job(s) finished more than 7d ago\n"
    only_dead = cli("jobs", "purge", APP, "--older-than", "0s", "--status", "dead")
    assert only_dead.output == "purged 1 job(s) finished more than 0s ago\n"
    everything = cli("jobs", "purge", APP, "--older-than", "0")
    assert everything.output == "purged 1 job(s) finished more than 0 ago\n"
    left = {row[0] for row in sql(store.url, "SELECT status FROM jobs")}
    assert left == {"queued", "scheduled", "running"}
    bad = CliRunner().invoke(main, ["jobs", "purge", APP, "--older-than", "a week"])
    assert bad.exit_code == 2
    assert "is not a duration" in bad.output


def test_jobs_watch_once_draws_the_running_jobs(store: Store) -> None:
    result = cli("jobs", "watch", APP, "--once")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("underway: 1 running")
    assert any(line.strip().startswith("default:") and "1 running" in line for line in lines)
    assert any(store.ids["running"] in line and "step 2 of 4" in line for line in lines)
    assert not any(store.ids["queued"] in line for line in lines)


def test_schedules_without_any(store: Store) -> None:
    result = cli("schedules", APP)
    assert result.output.startswith("no schedules")
    assert orjson.loads(cli("schedules", APP, "--json").output) == []


def test_a_bad_app_path_is_explained(store: Store) -> None:
    missing = CliRunner().invoke(main, ["jobs", "list", "no_such_module:uw"])
    assert missing.exit_code == 2
    assert "cannot import 'no_such_module'" in missing.output
    not_an_app = CliRunner().invoke(main, ["jobs", "list", "tests.queue_apps.basic:nap"])
    assert not_an_app.exit_code == 2
    assert "is not an underway.Underway app" in not_an_app.output
    found = cli("jobs", "list", "tests.queue_apps.basic", "--json")  # the one app in it
    assert len(json_lines(found)) == 5


def test_the_installed_command_lists_jobs_as_json(store: Store, tmp_path: Path) -> None:
    child = WorkerProcess(
        "jobs",
        "list",
        APP,
        "--json",
        "--status",
        "succeeded",
        url=store.url,
        log=tmp_path / "log",
        output=tmp_path / "out",
    )
    assert child.wait() == 0, child.output()
    (row,) = [orjson.loads(line) for line in child.output().splitlines()]
    assert row["id"] == store.ids["succeeded"]


def _record(store: Store, job_id: str) -> JobRecord | None:
    async def get() -> JobRecord | None:
        try:
            backend: Backend = await store.module.uw.backend()
            return await backend.get_job(job_id)
        finally:
            await store.module.uw.close()

    result: JobRecord | None = asyncio.run(get())
    return result


def test_retried_jobs_run_again(store: Store) -> None:
    assert cli("jobs", "retry", APP, store.ids["dead"]).exit_code == 0
    record = _record(store, store.ids["dead"])
    assert record is not None
    assert record.error is None and record.dead_reason is None and record.finished_at is None
    assert (record.status.value, record.attempts) == ("queued", 0)
    assert record.payload == b'{"args":["the disk is full"],"kwargs":{}}'


def test_worker_options_are_checked_before_it_starts(store: Store) -> None:
    for option, value in [("--concurrency", "0"), ("--lease", "0"), ("--grace", "-1")]:
        result = CliRunner().invoke(main, ["worker", APP, option, value])
        assert result.exit_code == 2, (option, result.output)
        assert f"Invalid value for '{option}'" in result.output


def test_loading_an_app_twice_adds_the_directory_to_the_path_once(store: Store) -> None:
    before = sys.path.count(str(ROOT))
    cli("jobs", "list", APP, "--json")
    cli("jobs", "list", APP, "--json")
    assert sys.path.count(str(ROOT)) <= max(before, 1)


def test_watch_and_cancel_a_job_running_in_a_worker_process(store: Store, tmp_path: Path) -> None:
    async def enqueue() -> str:
        try:
            job = await store.module.halfway.enqueue("halfway there")
            return str(job.id)
        finally:
            await store.module.uw.close()

    job_id = asyncio.run(enqueue())
    log = tmp_path / "executions.log"
    with WorkerProcess.worker(
        APP, "--lease", "1", "--no-prefetch", url=store.url, log=log, output=tmp_path / "worker.out"
    ) as worker:
        deadline = time.monotonic() + 10
        while not any(line.startswith(f"start {job_id}") for line in read_lines(log)):
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.02)
        shown = orjson.loads(cli("jobs", "show", APP, job_id, "--json").output)
        assert (shown["status"], shown["progress"]) == ("running", 0.5)
        assert shown["progress_message"] == "halfway there"
        assert f":{worker.process.pid}:" in shown["lease_owner"]
        watched = cli("jobs", "watch", APP, "--once").output
        assert job_id in watched and "halfway there" in watched
        cancelled = cli("jobs", "cancel", APP, job_id)
        assert "cancel requested" in cancelled.output
        while sql(store.url, "SELECT status FROM jobs WHERE id = ?", (job_id,)) != [("cancelled",)]:
            assert time.monotonic() < deadline + 5, worker.output()
            time.sleep(0.02)
        assert "cancelled while running" in worker.output()
