"""What the SQLite backend promises beyond the contract: schema, processes, bad rows, URLs."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import sys
import textwrap
import time
from datetime import timedelta
from importlib import resources
from pathlib import Path

import pytest

from tests.backends.conftest import START, FakeClock
from underway.backends import backend_from_url
from underway.backends._sqlite_schema import load_migrations, split_statements
from underway.backends.sqlite import SQLiteBackend
from underway.errors import BackendError, CorruptRecordError
from underway.job import JobStatus, NewJob, Outcome, Release

LEASE = timedelta(seconds=30)
ROOT = Path(__file__).resolve().parents[2]


def new(task: str = "t", **options: object) -> NewJob:
    return NewJob(task, b'{"args":[],"kwargs":{}}', **options)  # type: ignore[arg-type]


def describe(conn: sqlite3.Connection) -> dict[str, object]:
    """The structure of a database: tables' columns and every index, comments ignored."""
    shape: dict[str, object] = {}
    objects = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    ).fetchall()
    for kind, name, table, sql in objects:
        text = re.sub(r"--[^\n]*", "", sql or "")
        text = re.sub(r"\s+", " ", text).replace("( ", "(").replace(" )", ")").strip()
        entry: dict[str, object] = {"kind": kind, "table": table, "sql": text}
        if kind == "table":
            entry["columns"] = conn.execute(f"PRAGMA table_info({name})").fetchall()
        shape[name] = entry
    return shape


def test_migrations_yield_the_documented_schema(tmp_path: Path) -> None:
    migrated = sqlite3.connect(tmp_path / "migrated.db", isolation_level=None)
    from underway.backends._sqlite_schema import migrate

    assert migrate(migrated) == len(load_migrations())
    assert migrate(migrated) == len(load_migrations())  # a second run changes nothing
    reference = sqlite3.connect(":memory:")
    schema = resources.files("underway.backends").joinpath("sql").joinpath("sqlite")
    for statement in split_statements(schema.joinpath("schema.sql").read_text("utf-8")):
        reference.execute(statement)
    assert describe(migrated) == describe(reference)
    versions = migrated.execute("SELECT version FROM schema_version").fetchall()
    assert versions == [(v,) for v, _, _ in load_migrations()]


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with SQLiteBackend(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (999)")
    with pytest.raises(BackendError, match="schema version 999, newer"):
        await SQLiteBackend(path).open()


async def test_concurrent_opens_migrate_once(tmp_path: Path) -> None:
    backends = [SQLiteBackend(tmp_path / "jobs.db") for _ in range(4)]
    await asyncio.gather(*(b.open() for b in backends))
    try:
        await asyncio.gather(*(b.enqueue(new()) for b in backends))
        assert len(await backends[0].list_jobs()) == 4
    finally:
        await asyncio.gather(*(b.close() for b in backends))
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (1,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_jobs_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with SQLiteBackend(path) as first:
        job = await first.enqueue(new(priority=2))
    async with SQLiteBackend(path) as second:
        assert await second.get_job(job.id) == job


async def test_closed_backend_says_so(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "jobs.db")
    with pytest.raises(BackendError, match="not open"):
        await backend.get_job("x")


async def test_unopenable_file_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="cannot open"):
        await SQLiteBackend(tmp_path / "missing-dir" / "jobs.db").open()


# -- malformed rows ---------------------------------------------------------------------------


def insert_raw(path: Path, **overrides: object) -> None:
    row: dict[str, object] = {
        "id": "raw",
        "task_name": "t",
        "queue": "default",
        "payload": b"{}",
        "status": "queued",
        "enqueued_at": 0,
        "scheduled_at": 0,
    }
    row.update(overrides)
    columns = ", ".join(row)
    marks = ", ".join("?" * len(row))
    with sqlite3.connect(path) as conn:
        conn.execute(f"INSERT INTO jobs ({columns}) VALUES ({marks})", list(row.values()))


async def test_a_malformed_row_does_not_break_reads_and_goes_dead_on_acquire(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "jobs.db"
    async with SQLiteBackend(path, clock=clock) as backend:
        good = await backend.enqueue(new())
        insert_raw(path, id="bad-time", enqueued_at="yesterday")
        insert_raw(path, id="bad-status", status="exploded")
        listed = await backend.list_jobs()
        assert [j.id for j in listed] == [good.id]
        with pytest.raises(CorruptRecordError, match=r"bad-time.*enqueued_at"):
            await backend.get_job("bad-time")
        assert (await backend.count_jobs())["default"] == {JobStatus.QUEUED: 2}
        acquired = await backend.acquire(["default"], "w", 10, LEASE)
        assert [j.id for j in acquired] == [good.id]
        assert (await backend.count_jobs())["default"] == {
            JobStatus.RUNNING: 1,
            JobStatus.DEAD: 1,
        }
    with sqlite3.connect(path) as conn:
        status, reason = conn.execute(
            "SELECT status, dead_reason FROM jobs WHERE id = 'bad-time'"
        ).fetchone()
    assert status == "dead"
    assert "malformed record" in reason
    assert "enqueued_at" in reason


# -- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///jobs.db", "jobs.db"),
        ("sqlite:////var/lib/app/jobs.db", "/var/lib/app/jobs.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite:///with%20space.db", "with space.db"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    backend = backend_from_url(url)
    assert isinstance(backend, SQLiteBackend)
    assert backend.path == path


def test_sqlite_url_options() -> None:
    backend = backend_from_url("sqlite:///j.db?busy_timeout=1.5&poll_interval=0.05")
    assert isinstance(backend, SQLiteBackend)
    assert (backend.busy_timeout, backend.poll_interval) == (1.5, 0.05)
    with pytest.raises(ValueError, match="unknown sqlite:// options"):
        backend_from_url("sqlite:///j.db?timeout=1")
    with pytest.raises(ValueError, match="bad option"):
        backend_from_url("sqlite:///j.db?poll_interval=0")
    with pytest.raises(ValueError, match="names no database file"):
        backend_from_url("sqlite://")


async def test_private_memory_database_works() -> None:
    async with backend_from_url("sqlite:///:memory:") as backend:
        job = await backend.enqueue(new())
        assert await backend.get_job(job.id) == job


# -- several processes on one file ------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from datetime import timedelta
    from underway.backends.sqlite import SQLiteBackend
    from underway.job import Outcome, Release

    async def main(path, go, name):
        got = []
        async with SQLiteBackend(path, synchronous="normal") as backend:
            print("ready", flush=True)
            while not os.path.exists(go):
                time.sleep(0.005)
            while True:
                jobs = await backend.acquire(["default"], name, 7, timedelta(seconds=60))
                if not jobs:
                    break
                got.extend(j.id for j in jobs)
                done = [Release(j.lease, Outcome.success(b"null")) for j in jobs]
                assert all(await backend.release(name, done))
        print(json.dumps(got))

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
    """
)


async def test_processes_sharing_a_file_never_acquire_the_same_job(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    go = tmp_path / "go"
    async with SQLiteBackend(path, synchronous="normal") as backend:
        for _ in range(4):
            await backend.enqueue_many([new() for _ in range(500)])
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                WORKER,
                str(path),
                str(go),
                f"proc{i}",
                stdout=asyncio.subprocess.PIPE,
                cwd=ROOT,
            )
            for i in range(3)
        ]
        for proc in procs:  # every child has connected before any takes a job
            assert proc.stdout is not None
            assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"ready\n"
        go.touch()
        outputs = [(await asyncio.wait_for(proc.communicate(), 50))[0] for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0, 0]
        per_process = [json.loads(out) for out in outputs]
        everything = [job_id for ids in per_process for job_id in ids]
        assert len(everything) == 2000
        assert len(set(everything)) == 2000
        assert all(len(ids) > 0 for ids in per_process), [len(ids) for ids in per_process]
        assert (await backend.count_jobs()) == {"default": {JobStatus.SUCCEEDED: 2000}}


async def test_two_backends_on_one_file_share_leases(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "jobs.db"
    async with SQLiteBackend(path, clock=clock) as a, SQLiteBackend(path, clock=clock) as b:
        await a.enqueue(new(max_attempts=3))
        (job,) = await a.acquire(["default"], "wa", 1, LEASE)
        assert await b.acquire(["default"], "wb", 1, LEASE) == []
        clock.advance(31)
        assert len(await b.reap_expired()) == 1
        (again,) = await b.acquire(["default"], "wb", 1, LEASE)
        assert await a.release("wa", [Release(job.lease, Outcome.success(b"1"))]) == [False]
        assert await b.release("wb", [Release(again.lease, Outcome.success(b"2"))]) == [True]
        done = await a.get_job(job.id)
        assert done is not None
        assert (done.status, done.attempts, done.result) == (JobStatus.SUCCEEDED, 2, b"2")


async def test_wait_for_work_sees_jobs_enqueued_by_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with (
        SQLiteBackend(path, poll_interval=0.02) as waiting,
        SQLiteBackend(path) as producer,
    ):
        waiter = asyncio.create_task(waiting.wait_for_work(["default"], 5.0))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        started = time.monotonic()
        await producer.enqueue(new(scheduled_at=START))
        assert await asyncio.wait_for(waiter, 5) is True
        assert time.monotonic() - started < 0.5


async def test_concurrent_writes_share_commits_and_fail_alone(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "jobs.db")
    async with backend:
        taken = await backend.enqueue(new())
        commits = 0

        def count_commit(statement: str) -> None:
            nonlocal commits
            commits += statement.strip().upper() == "COMMIT"

        await backend._call(lambda conn: conn.set_trace_callback(count_commit))
        calls = [backend.enqueue(new(f"t{i}")) for i in range(50)]
        calls.insert(10, backend.enqueue(NewJob("dup", b"{}", id=taken.id)))  # refused
        results = await asyncio.gather(*calls, return_exceptions=True)
        await backend._call(lambda conn: conn.set_trace_callback(None))
        assert isinstance(results[10], ValueError)
        assert all(not isinstance(r, BaseException) for i, r in enumerate(results) if i != 10)
        stored = await backend.list_jobs(limit=100)
        assert len(stored) == 51
        assert "dup" not in {job.task_name for job in stored}
        assert 1 <= commits < 25, commits  # grouped: far fewer commits than writes
