"""The worker in this process: executors, retries, timeouts, cancellation, order, bad input."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from tests.queue_apps import cpu
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
from underway import JobFailed, JobStatus, Underway, Worker
from underway.job import JobRecord, NewJob


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request.param, tmp_path)


@pytest.fixture
async def uw(url: str) -> AsyncIterator[Underway]:
    app = Underway(url)
    yield app
    await app.close()


async def status_of(uw: Underway, job_id: str) -> JobStatus | None:
    record = await uw.backend_record(job_id)
    return None if record is None else record.status


# -- executors --------------------------------------------------------------------------------


async def test_async_tasks_run_on_the_event_loop(uw: Underway) -> None:
    loop_thread = threading.get_ident()

    @uw.task
    async def where() -> int:
        return threading.get_ident()

    job = await where.enqueue()
    async with running(uw):
        assert await job.result(timeout=5) == loop_thread
    await job.refresh()
    assert job.status is JobStatus.SUCCEEDED
    assert job.attempts == 1
    assert job.finished_at is not None and job.started_at is not None


async def test_sync_tasks_run_in_a_thread_not_on_the_event_loop(uw: Underway) -> None:
    loop_thread = threading.get_ident()

    @uw.task
    def blocking(seconds: float) -> list[object]:
        time.sleep(seconds)  # would stall every other job if it ran on the loop
        return [threading.get_ident(), threading.current_thread().name]

    @uw.task
    async def quick() -> str:
        return "quick"

    slow = await blocking.enqueue(0.3)
    async with running(uw):
        await asyncio.sleep(0.05)
        started = time.monotonic()
        assert await (await quick.enqueue()).result(timeout=5) == "quick"
        assert time.monotonic() - started < 0.25  # the loop was free while the thread slept
        ident, name = await slow.result(timeout=5)
    assert ident != loop_thread
    assert isinstance(name, str) and name.startswith("underway-job")


async def test_process_tasks_run_in_another_process(uw: Underway) -> None:
    squares = uw.task(process=True)(cpu.sum_of_squares)
    failing = uw.task(process=True, retries=0)(cpu.fail_in_process)
    assert squares.executor == "process"
    job = await squares.enqueue(10_000)
    bad = await failing.enqueue("boom in a pool")
    async with running(uw, processes=1):
        result = await job.result(timeout=20)
        with pytest.raises(JobFailed, match="ValueError: boom in a pool"):
            await bad.result(timeout=20)
    assert result["answer"] == sum(i * i for i in range(10_000))
    assert result["pid"] != os.getpid()


# -- outcomes ---------------------------------------------------------------------------------


async def test_retries_with_backoff_then_success(uw: Underway) -> None:
    runs: list[float] = []

    @uw.task(retries=3, retry_backoff=0.2)
    async def flaky() -> str:
        runs.append(time.monotonic())
        if len(runs) < 3:
            raise ConnectionError(f"attempt {len(runs)} failed")
        return "third time lucky"

    job = await flaky.enqueue()
    async with running(uw):
        assert await job.result(timeout=10) == "third time lucky"
    await job.refresh()
    assert job.status is JobStatus.SUCCEEDED
    assert job.attempts == 3
    assert job.error == "ConnectionError: attempt 2 failed"  # the last error is kept
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert gaps[0] >= 0.1 - 0.02  # first retry waits backoff * [0.5, 1]
    assert gaps[1] >= 0.2 - 0.02  # the second twice as long
    assert gaps[0] < 1.0 and gaps[1] < 1.5


async def test_exhausted_retries_make_the_job_dead_with_the_error(uw: Underway) -> None:
    attempts: list[int] = []

    @uw.task(retries=1, retry_backoff=0.01)
    async def broken(order: int) -> None:
        attempts.append(order)
        raise KeyError(f"no order {order}")

    job = await broken.enqueue(42)
    async with running(uw):
        with pytest.raises(JobFailed) as info:
            await job.result(timeout=5)
    failed = info.value.job
    assert attempts == [42, 42]
    assert failed.status is JobStatus.DEAD
    assert failed.attempts == 2
    assert failed.error == "KeyError: 'no order 42'"
    assert failed.traceback is not None
    assert "raise KeyError" in failed.traceback and "Traceback" in failed.traceback
    assert failed.dead_reason is not None and "retries exhausted" in failed.dead_reason
    assert "KeyError" in str(info.value) and failed.id in str(info.value)


async def test_a_job_over_its_timeout_is_stopped_and_fails(uw: Underway) -> None:
    finished: list[str] = []

    @uw.task(timeout=0.2, retries=0)
    async def slow() -> None:
        await asyncio.sleep(5)
        finished.append("slow")

    job = await slow.enqueue()
    started = time.monotonic()
    async with running(uw):
        with pytest.raises(JobFailed, match="timeout"):
            await job.result(timeout=5)
    assert time.monotonic() - started < 2
    assert finished == []
    await job.refresh()
    assert job.status is JobStatus.DEAD
    assert job.error is not None and "ran longer than its timeout" in job.error


async def test_a_task_raising_timeout_error_itself_is_not_reported_as_a_timeout(
    uw: Underway,
) -> None:
    @uw.task(retries=0)
    async def upstream() -> None:
        raise TimeoutError("the upstream API did not answer")

    job = await upstream.enqueue()
    async with running(uw):
        with pytest.raises(JobFailed):
            await job.result(timeout=5)
    await job.refresh()
    assert job.error == "TimeoutError: the upstream API did not answer"
    assert job.traceback is not None and "raise TimeoutError" in job.traceback


async def test_a_result_that_cannot_be_stored_fails_the_job_clearly(uw: Underway) -> None:
    @uw.task(retries=0)
    async def returns_a_set() -> set[int]:
        return {1, 2}

    job = await returns_a_set.enqueue()
    async with running(uw):
        with pytest.raises(JobFailed, match="return value"):
            await job.result(timeout=5)
    await job.refresh()
    assert job.status is JobStatus.DEAD
    assert job.error is not None and "SerializationError" in job.error
    assert "list(result)" in job.error


# -- cancellation -----------------------------------------------------------------------------


async def test_a_cancelled_queued_job_never_runs(uw: Underway) -> None:
    ran: list[int] = []

    @uw.task
    async def work(n: int) -> None:
        ran.append(n)

    doomed = await work.enqueue(1)
    await doomed.cancel()
    assert doomed.status is JobStatus.CANCELLED
    kept = await work.enqueue(2)
    async with running(uw):
        await kept.result(timeout=5)
        await asyncio.sleep(0.1)
    assert ran == [2]
    assert await status_of(uw, doomed.id) is JobStatus.CANCELLED


async def test_cancelling_a_running_async_job_stops_it(uw: Underway) -> None:
    started = asyncio.Event()
    reached_the_end: list[bool] = []

    @uw.task
    async def long() -> None:
        started.set()
        await asyncio.sleep(10)
        reached_the_end.append(True)

    job = await long.enqueue()
    async with running(uw, lease=0.4):
        await asyncio.wait_for(started.wait(), 5)
        await job.cancel()
        assert job.status is JobStatus.RUNNING
        assert job.record.cancel_requested
        await wait_until(lambda: _is(uw, job.id, JobStatus.CANCELLED), timeout=3, what="cancelled")
    assert reached_the_end == []
    await job.refresh()
    assert job.finished_at is not None


async def _is(uw: Underway, job_id: str, status: JobStatus) -> bool:
    return await status_of(uw, job_id) is status


async def test_unique_jobs_return_the_running_job_too(uw: Underway) -> None:
    started = asyncio.Event()
    finish = asyncio.Event()

    @uw.task(unique=True)
    async def rebuild(index: str) -> str:
        started.set()
        await finish.wait()
        return index

    first = await rebuild.enqueue("products")
    async with running(uw):
        await asyncio.wait_for(started.wait(), 5)
        again = await rebuild.enqueue("products")
        assert again.id == first.id
        assert again.status is JobStatus.RUNNING
        finish.set()
        assert await first.result(timeout=5) == "products"
        after = await rebuild.enqueue("products")  # finished: the key is free again
        assert after.id != first.id
        assert await after.result(timeout=5) == "products"


async def test_a_worker_that_lost_its_lease_stops_the_job_and_records_nothing(
    uw: Underway,
) -> None:
    started = asyncio.Event()
    finished: list[str] = []

    @uw.task
    async def long() -> str:
        started.set()
        await asyncio.sleep(3)
        finished.append("long")
        return "too late"

    job = await long.enqueue()
    backend = await uw.backend()
    async with running(uw, lease=0.4) as worker:
        await asyncio.wait_for(started.wait(), 5)
        # An operator (or another worker's reaper) took the job away from this worker.
        await backend.mark_dead(job.id, "removed by the operator")
        await wait_until(lambda: worker.in_flight == 0, what="the worker to drop the job")
        await asyncio.sleep(0.2)
    assert finished == []
    await job.refresh()
    assert job.status is JobStatus.DEAD
    assert job.dead_reason == "removed by the operator"
    assert job.record.result is None


async def test_a_finished_job_is_not_run_again_while_its_outcome_waits_for_the_store(
    tmp_path: Path,
) -> None:
    """The store is locked past busy_timeout and the lease when a job ends: its release
    fails and is retried. Its lease must stay extended meanwhile, or the worker's own
    reaper recovers the finished job and runs it a second time."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}?busy_timeout=0.05&poll_interval=0.02"
    uw = Underway(url)
    runs: list[str] = []
    go = asyncio.Event()

    @uw.task
    async def once() -> str:
        runs.append("run")
        await go.wait()
        return "done"

    try:
        job = await once.enqueue()
        async with running(uw, lease=0.4):
            await wait_until(lambda: runs == ["run"], what="the job to start")
            blocker = sqlite3.connect(sqlite_path(url), isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            go.set()  # the job ends while nobody can write
            await asyncio.sleep(1.8)  # the release's retries back off past a heartbeat
            blocker.execute("COMMIT")
            blocker.close()
            assert await job.result(timeout=5) == "done"
            await asyncio.sleep(0.3)
        assert runs == ["run"]
        await job.refresh()
        assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
    finally:
        await uw.close()


# -- order and timing -------------------------------------------------------------------------


async def test_delayed_jobs_do_not_run_early(uw: Underway) -> None:
    ran_at: list[float] = []

    @uw.task
    async def later() -> None:
        ran_at.append(time.monotonic())

    start = time.monotonic()
    job = await later.options(delay=0.5).enqueue()
    async with running(uw):
        await asyncio.sleep(0.3)
        assert ran_at == []
        assert await status_of(uw, job.id) is JobStatus.SCHEDULED
        await job.result(timeout=5)
    assert ran_at[0] - start >= 0.5 - 0.01
    assert ran_at[0] - start < 1.5


async def test_higher_priority_runs_first(uw: Underway) -> None:
    order: list[str] = []

    @uw.task
    async def record(label: str) -> None:
        order.append(label)

    await record.options(priority=0).enqueue("low-1")
    await record.options(priority=10).enqueue("high")
    await record.options(priority=0).enqueue("low-2")
    await record.options(priority=5).enqueue("medium")
    last = await record.options(priority=-5).enqueue("lowest")
    async with running(uw, concurrency=1):
        await last.result(timeout=5)
    assert order == ["high", "medium", "low-1", "low-2", "lowest"]


async def test_concurrency_bounds_the_jobs_running_at_once(uw: Underway) -> None:
    now_running = 0
    most = 0

    @uw.task
    async def busy() -> None:
        nonlocal now_running, most
        now_running += 1
        most = max(most, now_running)
        await asyncio.sleep(0.02)
        now_running -= 1

    jobs = await busy.enqueue_many([((), {}) for _ in range(30)])
    async with running(uw, concurrency=3):
        for job in jobs:
            await job.result(timeout=10)
    assert most == 3


async def test_a_worker_takes_jobs_only_from_its_queues(uw: Underway) -> None:
    @uw.task(queue="mail")
    async def mail() -> str:
        return "sent"

    @uw.task(queue="reports")
    async def report() -> str:
        return "made"

    sent = await mail.enqueue()
    made = await report.enqueue()
    async with running(uw, queues=["mail"]) as worker:
        assert worker.queues == ("mail",)
        assert await sent.result(timeout=5) == "sent"
        await asyncio.sleep(0.2)
        assert await status_of(uw, made.id) is JobStatus.QUEUED
    async with running(uw) as worker:
        assert worker.queues == ("default", "mail", "reports")
        assert await made.result(timeout=5) == "made"


def test_invalid_worker_options_are_refused() -> None:
    uw = Underway("memory://")
    with pytest.raises(ValueError, match="concurrency"):
        uw.worker(concurrency=0)
    with pytest.raises(TypeError, match="list of queue names"):
        uw.worker(queues="default")
    with pytest.raises(ValueError, match="lease must be positive"):
        uw.worker(lease=0)
    with pytest.raises(ValueError, match="heartbeat must be shorter than the lease"):
        uw.worker(lease=1, heartbeat=2)
    assert uw.worker(lease=2).heartbeat == timedelta(seconds=0.5)


# -- leasing ahead (prefetch) -----------------------------------------------------------------


async def test_short_jobs_are_leased_ahead_but_never_run_more_than_concurrency(
    uw: Underway,
) -> None:
    now_running, most = 0, 0

    @uw.task
    async def short() -> None:
        nonlocal now_running, most
        now_running += 1
        most = max(most, now_running)
        await asyncio.sleep(0)
        now_running -= 1

    jobs = list(await short.enqueue_many([((), {})] * 300))
    async with running(uw, concurrency=3) as worker:
        for job in jobs[-5:]:
            await job.result(timeout=10)
        await wait_until(lambda: worker.counts["succeeded"] == 300, what="every job to end")
    assert most == 3
    records = [await uw.backend_record(job.id) for job in jobs]
    assert {(r.status, r.attempts) for r in records if r is not None} == {(JobStatus.SUCCEEDED, 1)}


async def test_jobs_leased_ahead_go_back_when_the_slots_stay_busy(uw: Underway) -> None:
    # Short jobs first, so the worker leases ahead; then two long ones take both slots,
    # and the jobs leased behind them go back to the queue instead of waiting there.
    @uw.task
    async def short() -> None:
        return None

    @uw.task
    async def long() -> None:
        await asyncio.sleep(0.6)

    early = await short.enqueue_many([((), {})] * 100)
    slow = await long.enqueue_many([((), {})] * 2)
    late = await short.enqueue_many([((), {})] * 4)
    async with running(uw, concurrency=2) as worker:
        for job in [*early, *slow, *late]:
            await job.result(timeout=10)
        assert worker.counts["handed back"] >= 1
        assert worker.counts["succeeded"] == 106
    for job in late:  # handed back, then run: the attempt they waited through not counted
        await job.refresh()
        assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)


async def test_a_worker_told_not_to_prefetch_leases_only_for_free_slots(uw: Underway) -> None:
    backend = await uw.backend()
    seen: list[int] = []

    @uw.task
    async def look() -> None:
        counts = await backend.count_jobs()
        seen.append(counts.get("default", {}).get(JobStatus.RUNNING, 0))

    await look.enqueue_many([((), {})] * 40)
    async with running(uw, concurrency=2, prefetch=False) as worker:
        await wait_until(lambda: worker.counts["succeeded"] == 40, what="every job to end")
    assert max(seen) <= 2


# -- bad input --------------------------------------------------------------------------------


async def test_unknown_task_goes_dead_and_the_worker_keeps_running(uw: Underway) -> None:
    @uw.task
    async def known() -> str:
        return "fine"

    backend = await uw.backend()
    stranger = await backend.enqueue(
        NewJob("billing.gone_task", b'{"args":[],"kwargs":{}}', max_attempts=3)
    )
    async with running(uw) as worker:
        await wait_until(lambda: _is(uw, stranger.id, JobStatus.DEAD), what="dead")
        assert await (await known.enqueue()).result(timeout=5) == "fine"
        assert worker.counts["dead"] == 1
    record = await backend.get_job(stranger.id)
    assert record is not None
    assert record.dead_reason is not None
    assert "unknown task 'billing.gone_task'" in record.dead_reason
    assert record.attempts == 1  # not retried: no worker of this app can run it


async def test_malformed_payload_goes_dead_with_the_reason(uw: Underway) -> None:
    @uw.task
    async def takes(x: int) -> int:
        return x

    backend = await uw.backend()
    garbage = await backend.enqueue(NewJob(takes.name, b"\x80 not json", max_attempts=3))
    wrong_shape = await backend.enqueue(NewJob(takes.name, b"[1, 2, 3]", max_attempts=3))
    async with running(uw):
        await wait_until(lambda: _is(uw, garbage.id, JobStatus.DEAD), what="garbage dead")
        await wait_until(lambda: _is(uw, wrong_shape.id, JobStatus.DEAD), what="shape dead")
        assert await (await takes.enqueue(5)).result(timeout=5) == 5
    for job_id in (garbage.id, wrong_shape.id):
        record = await backend.get_job(job_id)
        assert record is not None and record.dead_reason is not None
        assert "cannot decode the job's arguments" in record.dead_reason


async def test_malformed_sqlite_row_goes_dead_and_the_worker_keeps_running(
    tmp_path: Path,
) -> None:
    url = backend_url("sqlite", tmp_path)
    uw = Underway(url)

    @uw.task
    async def fine(n: int) -> int:
        return n

    try:
        broken = await fine.enqueue(1)
        sql(url, "UPDATE jobs SET priority = 'urgent' WHERE id = ?", (broken.id,))
        async with running(uw):
            assert await (await fine.enqueue(2)).result(timeout=5) == 2
            await wait_until(lambda: _is_dead_row(url, broken.id), what="the row to be dead")
        (reason,) = sql(url, "SELECT dead_reason FROM jobs WHERE id = ?", (broken.id,))[0]
        assert "malformed record" in reason and "priority" in reason
    finally:
        await uw.close()


def _is_dead_row(url: str, job_id: str) -> bool:
    rows = sql(url, "SELECT status FROM jobs WHERE id = ?", (job_id,))
    return rows == [("dead",)]


# -- stopping in this process -----------------------------------------------------------------


async def test_stop_lets_running_jobs_finish_within_the_grace(uw: Underway) -> None:
    @uw.task
    async def short() -> str:
        await asyncio.sleep(0.2)
        return "done"

    job = await short.enqueue()
    worker = uw.worker(grace=5, poll=0.05)
    run = asyncio.create_task(worker.run())
    await wait_until(lambda: worker.in_flight == 1, what="the job to start")
    worker.stop()
    await asyncio.wait_for(run, 5)
    await job.refresh()
    assert job.status is JobStatus.SUCCEEDED
    assert worker.counts["succeeded"] == 1


async def test_jobs_still_running_after_the_grace_are_handed_back(uw: Underway) -> None:
    runs = 0

    @uw.task
    async def slow() -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.5 if runs > 1 else 10)
        return f"run {runs}"

    job = await slow.enqueue()
    worker = uw.worker(grace=0.2, poll=0.05)
    run = asyncio.create_task(worker.run())
    await wait_until(lambda: worker.in_flight == 1, what="the job to start")
    began = time.monotonic()
    worker.stop()
    await asyncio.wait_for(run, 5)
    assert time.monotonic() - began < 2
    await job.refresh()
    assert job.status is JobStatus.QUEUED
    assert job.attempts == 0  # handed back unrun: the attempt does not count
    assert worker.counts["handed back"] == 1
    async with running(uw):
        assert await job.result(timeout=5) == "run 2"


async def test_kill_hands_running_jobs_back_at_once(uw: Underway) -> None:
    @uw.task
    async def forever() -> None:
        await asyncio.sleep(60)

    job = await forever.enqueue()
    worker = uw.worker(grace=30, poll=0.05)
    run = asyncio.create_task(worker.run())
    await wait_until(lambda: worker.in_flight == 1, what="the job to start")
    worker.stop()
    await asyncio.sleep(0.1)
    assert not run.done()  # still within the grace
    worker.kill()
    await asyncio.wait_for(run, 2)
    assert await status_of(uw, job.id) is JobStatus.QUEUED


async def test_a_thread_left_running_is_reported_as_abandoned(uw: Underway) -> None:
    gate = threading.Event()

    @uw.task(timeout=0.1, retries=0)
    def stuck() -> None:
        gate.wait(10)

    job = await stuck.enqueue()
    worker = uw.worker(poll=0.05)
    run = asyncio.create_task(worker.run())
    with pytest.raises(JobFailed, match="ran longer than its timeout"):
        await job.result(timeout=5)
    worker.stop()
    await asyncio.wait_for(run, 5)
    assert worker.abandoned == 1  # the CLI exits without waiting for it
    gate.set()
    await wait_until(lambda: worker.abandoned == 0, what="the thread to return")


async def test_kill_stops_the_processes_of_handed_back_process_tasks(uw: Underway) -> None:
    nap = uw.task(process=True)(cpu.sleep_and_report)
    job = await nap.enqueue(30)
    worker = uw.worker(poll=0.05, processes=1)
    run = asyncio.create_task(worker.run())
    await wait_until(lambda: worker.abandoned == 1, timeout=10, what="the call to start")
    pool = worker._runner._processes
    assert pool is not None
    (pid,) = list(pool._processes)
    worker.kill()
    await asyncio.wait_for(run, 5)
    assert await status_of(uw, job.id) is JobStatus.QUEUED
    await wait_until(lambda: not _alive(pid), timeout=5, what="the pool process to stop")


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return waited == 0


class _KilledRightAfterAcquire(Worker):
    """A worker told to stop at once just after it took jobs, before they begin."""

    def _start_job(self, record: JobRecord) -> None:
        super()._start_job(record)
        self.kill()


async def test_jobs_taken_just_before_a_kill_are_handed_back(uw: Underway) -> None:
    ran: list[str] = []

    @uw.task
    async def work() -> None:
        ran.append("ran")

    job = await work.enqueue()
    worker = _KilledRightAfterAcquire(uw, poll=0.05, concurrency=1)  # every slot taken
    await asyncio.wait_for(worker.run(), 5)
    assert ran == []
    await job.refresh()
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 0)  # not left running
    assert worker.counts["handed back"] == 1


async def test_a_worker_is_registered_while_it_runs(uw: Underway) -> None:
    backend = await uw.backend()
    async with running(uw, concurrency=2) as worker:
        (info,) = await backend.list_workers()
        assert info.id == worker.id
        assert info.pid == os.getpid()
        assert info.concurrency == 2
    assert await backend.list_workers() == []


async def test_an_expired_lease_is_reaped_and_the_job_runs_again(uw: Underway) -> None:
    """A worker that stopped heartbeating (here: a lease taken by hand) loses the job."""

    @uw.task(retries=2)
    async def once_more() -> str:
        return "recovered"

    job = await once_more.enqueue()
    backend = await uw.backend()
    (taken,) = await backend.acquire(["default"], "ghost-worker", 1, timedelta(seconds=0.3))
    assert taken.id == job.id
    started = time.monotonic()
    async with running(uw, lease=0.4):
        assert await job.result(timeout=5) == "recovered"
    assert time.monotonic() - started < 3
    await job.refresh()
    assert job.attempts == 2
    assert job.record.lease_token == 2


# -- a real worker process and signals ------------------------------------------------------


class _Env:
    """A SQLite store, an execution log and an output file for worker subprocesses."""

    def __init__(self, tmp_path: Path) -> None:
        self.url = backend_url("sqlite", tmp_path)
        self.log = tmp_path / "executions.log"
        self.output = tmp_path / "worker.out"
        self.app = Underway(self.url)

    def worker(self, *options: str) -> WorkerProcess:
        return WorkerProcess.worker(
            "tests.queue_apps.basic:uw", *options, url=self.url, log=self.log, output=self.output
        )

    def events(self, event: str, job_id: str) -> list[str]:
        return [line for line in read_lines(self.log) if line.split()[:2] == [event, job_id]]

    def status(self, job_id: str) -> tuple[str, int]:
        ((status, attempts),) = sql(
            self.url, "SELECT status, attempts FROM jobs WHERE id = ?", (job_id,)
        )
        return status, attempts


async def _enqueue(env: _Env, task: str, *args: object) -> str:
    """Enqueue a task of tests.queue_apps.basic by name, as a producer would."""
    payload = orjson.dumps({"args": list(args), "kwargs": {}})
    backend = await env.app.backend()
    record = await backend.enqueue(
        NewJob(f"tests.queue_apps.basic.{task}", payload, max_attempts=4)
    )
    return record.id


def _wait(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)


async def test_sigterm_lets_a_running_job_finish_within_the_grace(tmp_path: Path) -> None:
    env = _Env(tmp_path)
    with env.worker("--grace", "5", "--lease", "2") as worker:
        job_id = await _enqueue(env, "nap", 0.6)
        _wait(lambda: bool(env.events("start", job_id)), what="the job to start")
        began = time.monotonic()
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0
    assert time.monotonic() - began < 4
    assert env.status(job_id) == ("succeeded", 1)
    assert len(env.events("end", job_id)) == 1
    assert "Received SIGTERM: taking no new jobs" in worker.output()
    await env.app.close()


async def test_a_job_past_the_grace_is_handed_back_and_runs_again(tmp_path: Path) -> None:
    env = _Env(tmp_path)
    with env.worker("--grace", "0.3", "--lease", "2") as worker:
        job_id = await _enqueue(env, "nap_once", 30, 0.1)
        _wait(lambda: bool(env.events("start", job_id)), what="the job to start")
        began = time.monotonic()
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0
        assert time.monotonic() - began < 4
    assert env.status(job_id) == ("queued", 0)
    assert env.events("end", job_id) == []
    assert "Handing 1 unfinished job(s) back to the queue" in worker.output()
    with env.worker("--lease", "2") as again:
        _wait(lambda: env.status(job_id)[0] == "succeeded", what="the second run")
        again.signal(signal.SIGTERM)
        assert again.wait() == 0
    assert len(env.events("start", job_id)) == 2
    assert len(env.events("end", job_id)) == 1
    await env.app.close()


@pytest.mark.parametrize("task", ["nap", "sync_nap"])
async def test_a_second_sigterm_exits_at_once(tmp_path: Path, task: str) -> None:
    env = _Env(tmp_path)
    with env.worker("--grace", "30", "--lease", "2") as worker:
        job_id = await _enqueue(env, task, 20)
        _wait(lambda: bool(env.events("start", job_id)), what="the job to start")
        worker.signal(signal.SIGTERM)
        worker.wait_for("Send it again to stop at once")
        began = time.monotonic()
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=5) == 0
        assert time.monotonic() - began < 2
    assert env.status(job_id) == ("queued", 0)  # handed back, not lost
    assert env.events("end", job_id) == []
    await env.app.close()


# -- result retention -------------------------------------------------------------------------


async def test_finished_jobs_are_deleted_after_the_result_ttl(url: str) -> None:
    app = Underway(url, result_ttl=0.3)

    @app.task
    async def answer() -> int:
        return 42

    try:
        job = await answer.enqueue()
        async with running(app, lease=0.4, purge_every=0.1):
            assert await job.result(timeout=5) == 42
            assert await status_of(app, job.id) is JobStatus.SUCCEEDED  # kept for now

            async def purged() -> bool:
                return await status_of(app, job.id) is None

            await wait_until(purged, timeout=5, what="the finished job to be purged")
    finally:
        await app.close()


async def test_result_ttl_none_keeps_finished_jobs(url: str) -> None:
    app = Underway(url, result_ttl=None)

    @app.task
    async def answer() -> int:
        return 42

    try:
        job = await answer.enqueue()
        async with running(app, lease=0.4, purge_every=0.05):
            assert await job.result(timeout=5) == 42
            await asyncio.sleep(0.3)
        assert await status_of(app, job.id) is JobStatus.SUCCEEDED
    finally:
        await app.close()
