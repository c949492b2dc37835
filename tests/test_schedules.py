"""Durable schedules: tick arithmetic, misfire policies, exactly one job per tick."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from tests.queue_apps.harness import (
    KINDS,
    WorkerProcess,
    backend_url,
    read_lines,
    running,
    sql,
    sqlite_path,
    wait_until,
)
from underway import JobStatus, Underway
from underway.schedules import MAX_MISSED, MisfirePolicy, Schedule

UTC = timezone.utc
HOUR = timedelta(hours=1)


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request.param, tmp_path)


@pytest.fixture
async def uw(url: str) -> AsyncIterator[Underway]:
    app = Underway(url)
    yield app
    await app.close()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- tick arithmetic --------------------------------------------------------------------------


def test_interval_ticks_are_aligned_on_the_epoch() -> None:
    schedule = Schedule.build("s", minutes=5)
    assert schedule.next_tick(at("2026-03-08 09:01:30")) == at("2026-03-08 09:05:00")
    assert schedule.next_tick(at("2026-03-08 09:05:00")) == at("2026-03-08 09:05:00")
    assert schedule.trigger.next_after(at("2026-03-08 09:05:00")) == at("2026-03-08 09:10:00")
    assert schedule.describe() == "every 300 s"


def test_cron_and_time_schedules() -> None:
    cron = Schedule.build("c", cron="0 9 * * MON-FRI", timezone="Asia/Seoul")
    # Saturday 2026-03-07 in Seoul: the next run is Monday 09:00 KST = 00:00 UTC.
    assert cron.next_tick(at("2026-03-07 12:00:00")) == at("2026-03-09 00:00:00")
    assert cron.describe() == "cron 0 9 * * MON-FRI (Asia/Seoul)"
    from datetime import time as dt_time

    daily = Schedule.build("d", time=dt_time(18, 30), timezone="UTC")
    assert daily.next_tick(at("2026-03-08 19:00:00")) == at("2026-03-09 18:30:00")
    assert daily.describe() == "daily at 18:30:00 (UTC)"


def test_no_ticks_are_due_before_the_first_claim_or_before_the_next_tick() -> None:
    schedule = Schedule.build("s", seconds=10)
    now = at("2026-03-08 09:00:05")
    assert schedule.due_ticks(None, now) == []  # a new schedule waits for its next tick
    assert schedule.due_ticks(at("2026-03-08 09:00:00"), now) == []


@pytest.mark.parametrize(
    ("misfire", "expected"),
    [
        ("once", ["09:00:50"]),
        ("all", ["09:00:10", "09:00:20", "09:00:30", "09:00:40", "09:00:50"]),
        ("skip", []),
    ],
)
def test_missed_ticks_follow_the_misfire_policy(
    misfire: MisfirePolicy, expected: list[str]
) -> None:
    schedule = Schedule.build("s", seconds=10, misfire=misfire)
    due = schedule.due_ticks(at("2026-03-08 09:00:00"), at("2026-03-08 09:00:55"))
    assert [t.strftime("%H:%M:%S") for t in due] == expected


def test_misfire_all_keeps_only_the_latest_ticks() -> None:
    schedule = Schedule.build("s", seconds=1, misfire="all")
    last = at("2026-03-08 09:00:00")
    due = schedule.due_ticks(last, last + timedelta(seconds=1000))
    assert len(due) == MAX_MISSED
    assert due[-1] == last + timedelta(seconds=1000)
    assert due[0] == last + timedelta(seconds=1000 - MAX_MISSED + 1)


@pytest.mark.parametrize("misfire", ["once", "all"])
def test_a_long_outage_of_a_fast_schedule_still_coalesces_to_the_latest_tick(
    misfire: MisfirePolicy,
) -> None:
    schedule = Schedule.build("s", seconds=1, misfire=misfire)
    last = at("2026-03-08 09:00:00")
    now = last + timedelta(days=3, microseconds=500)  # 259,200 missed ticks
    started = time.perf_counter()
    due = schedule.due_ticks(last, now)
    assert due[-1] == last + timedelta(days=3)  # the latest tick, not one days ago
    assert len(due) == (1 if misfire == "once" else MAX_MISSED)
    assert schedule.due_ticks(due[-1], now) == []  # nothing left: one catch-up, not several
    assert time.perf_counter() - started < 0.05


# -- workers claiming ticks -------------------------------------------------------------------


def _wait_off_the_hour() -> None:
    """Keep an hourly tick from falling inside a short test."""
    into_hour = time.time() % 3600
    if into_hour > 3598:
        time.sleep(3601 - into_hour)


def _latest_hour(now: datetime) -> datetime:
    return datetime.fromtimestamp(now.timestamp() // 3600 * 3600, UTC)


async def test_a_new_schedule_does_not_fire_at_start(uw: Underway) -> None:
    _wait_off_the_hour()

    @uw.loop(hours=1)
    async def hourly() -> None: ...

    async with running(uw):
        await asyncio.sleep(0.3)
    backend = await uw.backend()
    assert await backend.list_jobs() == []
    assert await backend.last_schedule_tick(hourly.name) is None


@pytest.mark.parametrize(("misfire", "jobs"), [("once", 1), ("all", 10), ("skip", 0)])
async def test_ticks_missed_while_no_worker_ran_follow_the_misfire_policy(
    uw: Underway, misfire: MisfirePolicy, jobs: int
) -> None:
    _wait_off_the_hour()
    runs: list[str] = []

    @uw.loop(hours=1, misfire=misfire)
    async def hourly() -> None:
        runs.append("ran")

    backend = await uw.backend()
    latest = _latest_hour(datetime.now(UTC))
    # The last worker claimed a tick ten hours ago, then everything was down.
    assert await backend.claim_schedule_tick(hourly.name, latest - 10 * HOUR)
    async with running(uw):
        if jobs:
            await wait_until(lambda: len(runs) == jobs, what=f"{jobs} catch-up run(s)")
        await asyncio.sleep(0.3)  # and no more than that
    assert len(runs) == jobs
    stored = await backend.list_jobs(task_name=hourly.name)
    assert len(stored) == jobs
    assert all(job.status is JobStatus.SUCCEEDED for job in stored)
    expected_last = latest - 10 * HOUR if misfire == "skip" else latest
    assert await backend.last_schedule_tick(hourly.name) == expected_last


async def test_several_workers_enqueue_each_tick_once(url: str) -> None:
    apps = [Underway(url) for _ in range(3)] if url.startswith("sqlite") else [Underway(url)]
    runs: list[str] = []
    for app in apps:

        @app.loop(seconds=0.25, name="beat")
        async def beat() -> None:
            runs.append("beat")

    # Open the file once first: concurrent first opens of a new SQLite file can fail with
    # "database is locked" (PRAGMA journal_mode = WAL; a backend bug, reported).
    await apps[0].open()
    workers = [app.worker(poll=0.05, concurrency=2) for app in apps]
    if len(apps) == 1:  # memory:// lives in one app: three workers share it
        workers = [apps[0].worker(poll=0.05, concurrency=2) for _ in range(3)]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    started = time.monotonic()
    await asyncio.sleep(1.6)
    for w in workers:
        w.stop()
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    backend = await apps[0].backend()
    jobs = await backend.list_jobs(task_name="beat", limit=1000)
    ticks = elapsed / 0.25
    assert ticks - 2 <= len(jobs) <= ticks + 1, (len(jobs), ticks)
    assert len(runs) == len(jobs)  # each job ran once
    for app in apps:
        await app.close()


async def test_underway_schedules_lists_them(tmp_path: Path) -> None:
    env_url = backend_url("sqlite", tmp_path)
    child = WorkerProcess(
        "schedules",
        "tests.queue_apps.ticking:uw",
        "--json",
        url=env_url,
        log=tmp_path / "log",
        output=tmp_path / "out",
    )
    assert child.wait() == 0, child.output()
    (row,) = orjson.loads(child.output())
    assert row["name"] == "tests.queue_apps.ticking.tick"
    assert row["when"] == "every 1 s"
    assert row["misfire"] == "once"
    assert row["last_tick"] is None
    assert datetime.fromisoformat(row["next_tick"]).microsecond == 0


def test_three_worker_processes_enqueue_each_tick_once(tmp_path: Path) -> None:
    url = backend_url("sqlite", tmp_path)
    log = tmp_path / "ticks.log"
    # From before the first start: a started worker ticks while the next ones start.
    first = time.monotonic()
    workers = [
        WorkerProcess.worker(
            "tests.queue_apps.ticking:uw",
            "--lease",
            "2",
            url=url,
            log=log,
            output=tmp_path / f"worker{i}.out",
        )
        for i in range(3)
    ]
    try:
        time.sleep(4.2)
    finally:
        for worker in workers:
            worker.signal(signal.SIGTERM)
        codes = [worker.wait() for worker in workers]
    seconds = time.monotonic() - first
    assert codes == [0, 0, 0], [w.output() for w in workers]
    rows = sql(url, "SELECT id, status FROM jobs WHERE task_name = 'tests.queue_apps.ticking.tick'")
    ran = [line.split()[1] for line in read_lines(log)]
    duplicates = {job_id: n for job_id, n in Counter(ran).items() if n > 1}
    print(f"{len(rows)} tick jobs in {seconds:.1f} s from 3 workers; runs: {len(ran)}")
    assert seconds - 2 <= len(rows) <= seconds + 1, rows  # one per second, not three
    assert duplicates == {}
    assert set(ran) <= {job_id for job_id, _ in rows}


async def test_a_schedule_survives_a_store_that_is_briefly_locked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}?busy_timeout=0.05&poll_interval=0.02"
    uw = Underway(url)

    @uw.loop(seconds=0.2, name="beat")
    async def beat() -> None: ...

    try:
        backend = await uw.backend()
        async with running(uw, lease=5):
            await wait_until(lambda: _tick_jobs(url) >= 1, what="a first tick")
            # Another process holds the write lock for longer than busy_timeout: claims
            # fail with "database is locked" for a while.
            blocker = sqlite3.connect(sqlite_path(url), isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            await asyncio.sleep(0.7)
            blocker.execute("COMMIT")
            blocker.close()
            before = _tick_jobs(url)
            await wait_until(lambda: _tick_jobs(url) >= before + 2, what="ticks after the lock")
        assert await backend.last_schedule_tick("beat") is not None
    finally:
        await uw.close()


def _tick_jobs(url: str) -> int:
    ((n,),) = sql(url, "SELECT count(*) FROM jobs WHERE task_name = 'beat'")
    return int(n)
