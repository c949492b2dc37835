"""PostgreSQL with real worker processes: exactly-once runs, schedules, and faults.

Workers are real ``Underway(...).worker(...)`` processes (``tests/queue_apps/pg_app.py``)
that log every run to a file opened with ``O_APPEND``. The fault tests run on a private
server that the module starts on a free port, so that stopping it disturbs nobody; they
count lost jobs (must be zero) and jobs that ran twice (reported: at-least-once delivery
allows them), and print both.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest

from tests.backends.postgres_support import (
    PrivateCluster,
    drop_schemas,
    postgres_url,
    unique_schema,
    wait_for_listener,
)
from tests.queue_apps.pg_app import TICK, make_app, record_task
from underway.backends import backend_from_url
from underway.backends.postgres import PostgresBackend
from underway.errors import BackendError
from underway.job import JobStatus, NewJob

ROOT = Path(__file__).resolve().parents[2]
LEASE = timedelta(seconds=30)
LAUNCH = "from tests.queue_apps.pg_app import main; main()"


class WorkerProcess:
    """One worker subprocess; its output goes to a file (a pipe could fill and block it)."""

    def __init__(
        self, url: str, log: Path, out: Path, concurrency: int, lease: float, schedule: bool
    ) -> None:
        env = {**os.environ, "UNDERWAY_PG_APP_URL": url, "UNDERWAY_PG_APP_LOG": str(log)}
        if schedule:
            env["UNDERWAY_PG_APP_SCHEDULE"] = "1"
        self.out = out
        self._file = out.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, str(concurrency), str(lease)],
            cwd=ROOT,
            env=env,
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.out.read_text()

    async def ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while "ready" not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker never got ready:\n{self.output()}")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._file.close()

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"worker did not stop:\n{self.output()}") from None
        finally:
            self._file.close()
        return code


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Awaitable[list[WorkerProcess]]]]:
    """Start worker processes (and always stop them)."""
    started: list[WorkerProcess] = []

    async def start(
        url: str, n: int = 3, concurrency: int = 10, lease: float = 1.0, schedule: bool = False
    ) -> list[WorkerProcess]:
        batch = [
            WorkerProcess(
                url,
                tmp_path / "runs.log",
                tmp_path / f"worker{len(started) + i}.out",
                concurrency,
                lease,
                schedule,
            )
            for i in range(n)
        ]
        started.extend(batch)
        for worker in batch:
            await worker.ready()
        return batch

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()
        if not worker._file.closed:
            worker._file.close()


def runs(log: Path) -> Counter[int]:
    """How many times each job number ran, from the workers' log."""
    counts: Counter[int] = Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            first = line.split()[0]
            if first != "tick":
                counts[int(first)] += 1
    return counts


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.05)


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n[postgres] {line}")


async def enqueue_numbers(url: str, log: Path, n: int, pause: float = 0.0) -> None:
    app = make_app(url, str(log))
    record = record_task(app)
    async with app:
        jobs = [record.options().new_job((i, pause), {}) for i in range(n)]
        for start in range(0, n, 1000):
            await app.enqueue_jobs(jobs[start : start + 1000])


async def succeeded(backend: PostgresBackend) -> int:
    counts = await backend.count_jobs()
    return counts.get("default", {}).get(JobStatus.SUCCEEDED, 0)


# -- nothing fails ----------------------------------------------------------------------------


async def test_three_processes_run_10000_jobs_exactly_once(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    workers: Callable[..., Awaitable[list[WorkerProcess]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = postgres_url(request, poll_interval="0.1")
    log, n = tmp_path / "runs.log", 10_000
    async with backend_from_url(url) as backend:
        assert isinstance(backend, PostgresBackend)
        procs = await workers(url, n=3, concurrency=20, lease=5.0)
        started = time.monotonic()
        await enqueue_numbers(url, log, n)
        await until(lambda: _all_done(backend, n), 45, f"{n} jobs succeeded")
        elapsed = time.monotonic() - started
        assert [p.stop() for p in procs] == [0, 0, 0], [p.output() for p in procs]
    counts = runs(log)
    per_process = Counter(line.split()[1] for line in log.read_text().splitlines())
    report(capsys, f"3 processes x 20: {n} jobs in {elapsed:.1f} s ({n / elapsed:,.0f}/s)")
    assert set(counts) == set(range(n))
    assert max(counts.values()) == 1
    assert len(per_process) == 3, per_process


async def _all_done(backend: PostgresBackend, n: int) -> bool:
    return await succeeded(backend) == n


async def test_a_schedule_fires_once_per_tick_across_three_processes(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    workers: Callable[..., Awaitable[list[WorkerProcess]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = postgres_url(request, poll_interval="0.1")
    procs = await workers(url, n=3, concurrency=5, lease=5.0, schedule=True)
    since = datetime.now(timezone.utc)
    await asyncio.sleep(10)
    until_ = datetime.now(timezone.utc)
    await asyncio.sleep(0.5)  # the last tick's job runs
    assert [p.stop() for p in procs] == [0, 0, 0], [p.output() for p in procs]
    async with backend_from_url(url) as backend:
        ticks = await backend.list_jobs(task_name=TICK, limit=1000)
    in_window = [t for t in ticks if since <= t.enqueued_at < until_]
    ran = (tmp_path / "runs.log").read_text().count("tick")
    report(capsys, f"schedule every 1 s, 3 processes, 10 s: {len(in_window)} ticks enqueued")
    assert 9 <= len(in_window) <= 11, [t.enqueued_at for t in ticks]
    assert all(t.status is JobStatus.SUCCEEDED for t in in_window)
    assert ran == sum(t.status is JobStatus.SUCCEEDED for t in ticks)


# -- faults, on a private server --------------------------------------------------------------


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def private_url(private_pg: PrivateCluster) -> Iterator[str]:
    schema = unique_schema()
    yield f"{private_pg.dsn}?schema={schema}&poll_interval=0.1&connect_timeout=2"
    drop_schemas_on(private_pg, schema)


def drop_schemas_on(cluster: PrivateCluster, schema: str) -> None:
    if (cluster.data / "postmaster.pid").exists():
        drop_schemas([schema], cluster.dsn)


async def run_with_fault(
    url: str,
    log: Path,
    workers: Callable[..., Awaitable[list[WorkerProcess]]],
    fault: Callable[[list[WorkerProcess]], Awaitable[None]],
    n: int = 2000,
) -> tuple[Counter[int], list[WorkerProcess], float]:
    """Run ``n`` jobs of 10 ms on three workers, inject ``fault`` a quarter of the way."""
    procs = await workers(url, n=3, concurrency=10, lease=1.0)
    started = time.monotonic()
    await enqueue_numbers(url, log, n, pause=0.01)

    async def quarter_done() -> bool:
        return sum(runs(log).values()) >= n // 4

    await until(quarter_done, 30, "a quarter of the jobs ran")
    await fault(procs)
    async with backend_from_url(url) as backend:
        assert isinstance(backend, PostgresBackend)
        try:
            await until(lambda: _all_done(backend, n), 45, f"all {n} jobs succeeded")
        except AssertionError:
            counts = await backend.count_jobs()
            tails = "\n---\n".join(p.output()[-3000:] for p in procs)
            raise AssertionError(f"not all jobs succeeded: {counts}\n{tails}") from None
    elapsed = time.monotonic() - started
    for proc in procs:
        if proc.process.poll() is None:
            assert proc.stop() == 0, proc.output()
    return runs(log), procs, elapsed


async def test_a_worker_killed_mid_run_loses_no_job(
    private_url: str,
    tmp_path: Path,
    workers: Callable[..., Awaitable[list[WorkerProcess]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def kill_one(procs: list[WorkerProcess]) -> None:
        procs[0].kill()

    n = 2000
    counts, _, elapsed = await run_with_fault(
        private_url, tmp_path / "runs.log", workers, kill_one, n
    )
    lost = set(range(n)) - set(counts)
    twice = sum(c - 1 for c in counts.values())
    report(
        capsys, f"worker SIGKILLed: {n} jobs, {len(lost)} lost, {twice} ran twice, {elapsed:.1f} s"
    )
    assert not lost
    assert twice <= 20  # at most what the killed worker had running or unreported


async def test_a_server_restart_mid_run_loses_no_job(
    private_pg: PrivateCluster,
    private_url: str,
    tmp_path: Path,
    workers: Callable[..., Awaitable[list[WorkerProcess]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def restart(_: list[WorkerProcess]) -> None:
        await asyncio.to_thread(private_pg.restart)

    n = 2000
    counts, procs, elapsed = await run_with_fault(
        private_url, tmp_path / "runs.log", workers, restart, n
    )
    lost = set(range(n)) - set(counts)
    twice = sum(c - 1 for c in counts.values())
    report(
        capsys, f"server restarted: {n} jobs, {len(lost)} lost, {twice} ran twice, {elapsed:.1f} s"
    )
    assert not lost
    assert any("PostgreSQL" in p.output() for p in procs)  # the outage was seen, and logged


async def test_enqueue_during_an_outage_raises_a_clear_error(
    private_pg: PrivateCluster, private_url: str
) -> None:
    waiting_url = private_url.replace("poll_interval=0.1", "poll_interval=30")
    async with backend_from_url(private_url) as producer, backend_from_url(waiting_url) as waiting:
        assert isinstance(waiting, PostgresBackend)
        await producer.enqueue(NewJob("t", b"{}"))
        await asyncio.to_thread(private_pg.stop)
        try:
            with pytest.raises(
                BackendError, match=r"could not enqueue 1 job.*Is the server running"
            ) as caught:
                await producer.enqueue(NewJob("t", b"{}"))
            assert caught.value.__cause__ is not None
            assert f"127.0.0.1:{private_pg.port}/postgres" in str(caught.value)
        finally:
            await asyncio.to_thread(private_pg.start)
        # The same objects work again: the pool reconnects, the listener listens again.
        assert len(await producer.acquire(["default"], "w", 10, LEASE)) == 1
        conn = await asyncpg.connect(private_pg.dsn)
        try:
            await wait_for_listener(conn, waiting.channel)
        finally:
            await conn.close()
        await asyncio.sleep(0.2)  # past the wake-up the reconnect gives
        waiter = asyncio.create_task(waiting.wait_for_work(["default"], 10.0))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        sent = time.monotonic()
        await producer.enqueue(NewJob("t", b"{}"))
        assert await waiter is True
        assert time.monotonic() - sent < 0.1
