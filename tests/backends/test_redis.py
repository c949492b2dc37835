"""What the Redis backend promises beyond the contract: URLs, prefixes, warnings, waking,
retries after a lost reply, outages, and several worker processes.

Tests that stop, restart or reconfigure a server start a private one (``PrivateRedis``) on
a free port in a temporary directory; the others use the shared server with a key prefix
of their own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
from redis.asyncio.connection import SSLConnection, parse_url

from tests.backends.redis_support import PrivateRedis, redis_url
from tests.queue_apps.redis_app import make_app, record_task
from underway.backends import backend_from_url
from underway.backends._redis_records import to_us, unpack_record
from underway.backends.base import Backend
from underway.backends.redis import RedisBackend
from underway.errors import BackendError, CorruptRecordError
from underway.job import JobStatus, NewJob, Outcome, Release

LEASE = timedelta(seconds=30)
Q = ["default"]
ROOT = Path(__file__).resolve().parents[2]


def new(task: str = "t", **options: object) -> NewJob:
    return NewJob(task, b'{"args":[],"kwargs":{}}', **options)  # type: ignore[arg-type]


@pytest.fixture
def shared_url(request: pytest.FixtureRequest) -> str:
    return redis_url(request)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    private = PrivateRedis(tmp_path / "redis")
    private.start()
    try:
        yield private
    finally:
        private.stop()


async def open_redis(url: str) -> RedisBackend:
    backend = backend_from_url(url)
    assert isinstance(backend, RedisBackend)
    await backend.open()
    return backend


# -- URLs -------------------------------------------------------------------------------------


def test_url_with_user_password_database_and_tls() -> None:
    backend = backend_from_url(
        "rediss://app:s%40cret@cache.internal:6380/3?prefix=shop&retry_for=2"
        "&ssl_cert_reqs=none&socket_timeout=7"
    )
    assert isinstance(backend, RedisBackend)
    assert (backend.prefix, backend.db, backend.retry_for) == ("shop", 3, 2.0)
    assert backend.where == "rediss://cache.internal:6380/3"  # never the password
    driver = parse_url(backend._driver_url)
    assert (driver["username"], driver["password"]) == ("app", "s@cret")
    assert (driver["host"], driver["port"], driver["db"]) == ("cache.internal", 6380, 3)
    assert driver["connection_class"] is SSLConnection
    assert driver.get("ssl_cert_reqs") == "none"
    assert driver.get("socket_timeout") == 7.0
    assert "prefix" not in driver
    assert "retry_for" not in driver


def test_url_defaults_and_overrides() -> None:
    backend = backend_from_url("redis://localhost")
    assert isinstance(backend, RedisBackend)
    assert (backend.prefix, backend.db, backend.retry_for) == ("underway", 0, 5.0)
    assert backend.where == "redis://localhost:6379/0"
    assert RedisBackend("redis://h/2?prefix=a", prefix="b").prefix == "b"
    assert RedisBackend("redis://h/?db=4").db == 4


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost/0?poll=1", "unknown redis:// options"),
        ("redis://localhost/0?prefix=", "prefix"),
        ("redis://localhost/0?retry_for=soon", "retry_for"),
        ("redis://localhost/0?retry_for=-1", "negative"),
        ("redis://localhost/zero", "must be numbers"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        backend_from_url(url)


# -- prefixes ---------------------------------------------------------------------------------


async def test_prefixes_keep_apps_apart(shared_url: str, request: pytest.FixtureRequest) -> None:
    other_url = redis_url(request)
    one, two = await open_redis(shared_url), await open_redis(other_url)
    try:
        job = await one.enqueue(new(unique_key="k"))
        assert await two.get_job(job.id) is None
        assert await two.acquire(Q, "w", 10, LEASE) == []
        assert await two.count_jobs() == {}
        assert (await two.enqueue(new(unique_key="k"))).id != job.id
        assert await two.claim_schedule_tick("s", datetime.now(timezone.utc))
        assert await one.last_schedule_tick("s") is None
        client = redis.Redis.from_url(shared_url.split("?")[0])
        try:
            keys = [k.decode() for k in client.scan_iter(match=f"{one.prefix}:*")]
        finally:
            client.close()
        assert keys
        assert all(k.startswith(f"{one.prefix}:") for k in keys)
        assert f"{one.prefix}:job:{job.id}" in keys
    finally:
        await one.close()
        await two.close()


# -- bad records ------------------------------------------------------------------------------


async def test_a_record_that_cannot_be_read_goes_to_dead(
    shared_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = await open_redis(shared_url)
    client = redis.Redis.from_url(shared_url.split("?")[0])
    try:
        good = await backend.enqueue(new("good"))
        prefix, at, seq = backend.prefix, 1_000_000, 10**6
        client.hset(
            f"{prefix}:job:bad",
            mapping={
                "id": "bad",
                "task_name": "t",
                "queue": "default",
                "payload": b"{}",
                "status": "queued",
                "priority": 0,
                "attempts": "many",
                "max_attempts": 1,
                "enqueued_at": at,
                "scheduled_at": at,
                "lease_token": 0,
                "seq": seq,
            },
        )
        client.zadd(f"{prefix}:queue:default", {f"{at:016d}{seq:016d}bad": 0})
        client.zadd(f"{prefix}:jobs", {"bad": seq})
        got = await backend.acquire(Q, "w", 10, LEASE)
        assert [j.id for j in got] == [good.id]
        fields = client.hgetall(f"{prefix}:job:bad")
        assert fields[b"status"] == b"dead"
        assert b"attempts" in fields[b"dead_reason"]
        with pytest.raises(CorruptRecordError, match="bad"):
            await backend.get_job("bad")
        with caplog.at_level(logging.WARNING, logger="underway.backends.redis"):
            assert [j.id for j in await backend.list_jobs()] == [good.id]
        assert "cannot be read" in caplog.text
        assert (await backend.count_jobs())["default"][JobStatus.DEAD] == 1
    finally:
        client.close()
        await backend.close()


# -- credentials and server settings ----------------------------------------------------------


async def test_password_and_acl_user(tmp_path: Path) -> None:
    private = PrivateRedis(tmp_path / "redis", "--requirepass", "top secret")
    private.start()
    try:
        admin = redis.Redis(port=private.port, password="top secret")
        try:
            admin.acl_setuser(
                "app",
                enabled=True,
                passwords=["+p@ss:word"],
                keys=["*"],
                channels=["*"],
                commands=["+@all"],
            )
        finally:
            admin.close()
        base = f"127.0.0.1:{private.port}/0"
        for url in (f"redis://:top%20secret@{base}", f"redis://app:p%40ss%3Aword@{base}"):
            backend = await open_redis(url)
            try:
                job = await backend.enqueue(new())
                assert await backend.get_job(job.id) is not None
            finally:
                await backend.close()
        started = time.monotonic()
        with pytest.raises(BackendError, match="refused to log in") as caught:
            await open_redis(f"redis://app:wrong@{base}?retry_for=30")
        assert time.monotonic() - started < 5  # a refusal is not retried
        assert "wrong" not in str(caught.value)
        assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
    finally:
        private.stop()


async def test_tls(tmp_path: Path) -> None:
    private = PrivateRedis(tmp_path / "redis", tls=True)
    private.start()
    try:
        base = f"rediss://127.0.0.1:{private.port}/0"
        backend = await open_redis(f"{base}?ssl_ca_certs={private.certificate}")
        try:
            job = await backend.enqueue(new())
            assert [j.id for j in await backend.acquire(Q, "w", 1, LEASE)] == [job.id]
            assert await backend.wait_for_work(Q, 0.05) is False  # pub/sub over TLS too
        finally:
            await backend.close()
        # A certificate nobody vouches for is refused, not retried.
        started = time.monotonic()
        with pytest.raises(BackendError, match=r"TLS failed.*certificate verify failed"):
            await open_redis(f"{base}?retry_for=10")
        assert time.monotonic() - started < 5
    finally:
        private.stop()


@pytest.mark.parametrize(
    ("policy", "warned"),
    [
        ("allkeys-lru", True),
        ("allkeys-random", True),
        ("noeviction", False),
        ("volatile-lru", False),
    ],
)
async def test_warns_when_the_server_may_evict_keys(
    server: PrivateRedis, caplog: pytest.LogCaptureFixture, policy: str, warned: bool
) -> None:
    admin = redis.Redis(port=server.port)
    try:
        admin.config_set("maxmemory-policy", policy)
    finally:
        admin.close()
    with caplog.at_level(logging.WARNING, logger="underway.backends.redis"):
        backend = await open_redis(server.url)
        await backend.close()
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warned:
        (message,) = messages
        assert f"maxmemory-policy {policy}" in message
        assert "maxmemory-policy noeviction" in message
    else:
        assert messages == []


async def test_a_newer_data_layout_is_refused(shared_url: str) -> None:
    backend = backend_from_url(shared_url)
    assert isinstance(backend, RedisBackend)
    client = redis.Redis.from_url(shared_url.split("?")[0])
    try:
        client.set(f"{backend.prefix}:version", 99)
    finally:
        client.close()
    with pytest.raises(BackendError, match="layout version 99"):
        await backend.open()


async def test_a_full_server_refuses_an_enqueue_with_backend_error(tmp_path: Path) -> None:
    private = PrivateRedis(tmp_path / "redis", "--maxmemory", "3mb")
    private.start()
    backend = await open_redis(private.url)
    try:
        payload = b'{"args":["' + b"x" * 10_000 + b'"],"kwargs":{}}'
        stored = 0

        async def fill() -> None:
            nonlocal stored
            for _ in range(1000):
                await backend.enqueue_many([NewJob("t", payload) for _ in range(10)])
                stored += 10

        with pytest.raises(BackendError, match="maxmemory") as caught:
            await fill()
        assert isinstance(caught.value.__cause__, redis.exceptions.ResponseError)
        assert "underway jobs purge" in str(caught.value)
        assert stored > 0  # and the refused batch left nothing behind:
        assert (await backend.count_jobs())["default"][JobStatus.QUEUED] == stored
        # Workers still drain a full server, and purging makes room again.
        jobs = await backend.acquire(Q, "w", stored, LEASE)
        assert len(jobs) == stored
        done = [Release(j.lease, Outcome.success(b"null")) for j in jobs]
        assert await backend.release("w", done) == [True] * stored
        assert await backend.purge(timedelta(0)) == stored
        await backend.enqueue_many([NewJob("t", payload) for _ in range(10)])
    finally:
        await backend.close()
        private.stop()


# -- waiting for work -------------------------------------------------------------------------


async def test_idle_wait_wakes_on_an_enqueue_from_another_client(shared_url: str) -> None:
    waiting, producer = await open_redis(shared_url), await open_redis(shared_url)
    try:
        delays = []
        for _ in range(20):
            waiter = asyncio.create_task(waiting.wait_for_work(Q, 10.0))
            await asyncio.sleep(0.02)
            assert not waiter.done()
            started = time.perf_counter()
            await producer.enqueue(new())
            assert await asyncio.wait_for(waiter, 5) is True
            delays.append(time.perf_counter() - started)
            assert len(await waiting.acquire(Q, "w", 10, LEASE)) == 1
        delays.sort()
        print(f"wake-up after enqueue from another client: p50 {delays[10] * 1000:.2f} ms")
        assert delays[10] < 0.05
        # A job for another queue does not wake a worker of this one.
        waiter = asyncio.create_task(waiting.wait_for_work(Q, 0.3))
        await asyncio.sleep(0.02)
        await producer.enqueue(new(queue="other"))
        assert await waiter is False
    finally:
        await waiting.close()
        await producer.close()


async def test_idle_wait_sends_no_commands(server: PrivateRedis) -> None:
    backend = await open_redis(server.url)
    admin = redis.Redis(port=server.port)

    def calls() -> int:
        stats = admin.info("commandstats")
        return sum(int(v["calls"]) for v in stats.values())

    try:
        assert await backend.wait_for_work(Q, 0.05) is False  # subscribes
        before = calls()
        assert await backend.wait_for_work(Q, 1.5) is False
        # The INFO above, one probe script and the two commands it runs: no polling.
        assert calls() - before <= 4
    finally:
        admin.close()
        await backend.close()


async def test_idle_wait_ends_when_a_scheduled_job_comes_due(shared_url: str) -> None:
    backend = await open_redis(shared_url)
    try:
        at = datetime.now(timezone.utc) + timedelta(seconds=0.3)
        await backend.enqueue(new(scheduled_at=at))
        started = time.monotonic()
        assert await backend.wait_for_work(Q, 10.0) is True
        assert 0.2 <= time.monotonic() - started < 2.0
        assert len(await backend.acquire(Q, "w", 10, LEASE)) == 1
    finally:
        await backend.close()


async def test_close_wakes_waiters(shared_url: str) -> None:
    backend = await open_redis(shared_url)
    waiter = asyncio.create_task(backend.wait_for_work(Q, 10.0))
    await asyncio.sleep(0.05)
    await backend.close()
    assert await asyncio.wait_for(waiter, 2) is False


async def test_close_wakes_a_waiter_that_is_still_connecting(server: PrivateRedis) -> None:
    backend = await open_redis(f"{server.url}?retry_for=0.2")
    server.stop()
    waiter = asyncio.create_task(backend.wait_for_work(Q, 30.0))
    await asyncio.sleep(0.3)
    assert not waiter.done()
    started = time.monotonic()
    await backend.close()
    assert await asyncio.wait_for(waiter, 5) is False
    assert time.monotonic() - started < 1


# -- lost replies, outages, restarts ----------------------------------------------------------


class ReplyDropper:
    """A TCP proxy to Redis that can swallow the next reply and cut the connection.

    The server ran the command, the client never hears of it: what a connection dropped
    at the worst moment looks like.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.drop_next = False
        self.dropped = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> ReplyDropper:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool) -> None:
            while data := await src.read(65536):
                if replies and self.drop_next:
                    self.drop_next = False
                    self.dropped += 1
                    break
                dst.write(data)
                await dst.drain()
            writer.close()
            up_writer.close()

        await asyncio.gather(
            pump(reader, up_writer, False), pump(up_reader, writer, True), return_exceptions=True
        )


async def test_a_call_whose_reply_was_lost_is_answered_as_the_first_try(
    server: PrivateRedis,
) -> None:
    async with ReplyDropper(server.port) as proxy:
        backend = await open_redis(f"redis://127.0.0.1:{proxy.port}/0")
        try:
            # Load every script used below, so that the dropped reply is the script's own.
            await backend.enqueue(new())
            (warm,) = await backend.acquire(Q, "w", 1, LEASE)
            await backend.release("w", [Release(warm.lease, Outcome.success(b"1"))])
            await backend.claim_schedule_tick("s", datetime(2026, 1, 1, tzinfo=timezone.utc))

            proxy.drop_next = True
            records = await backend.enqueue_many([new(f"t{i}") for i in range(3)])
            assert proxy.dropped == 1
            assert [r.task_name for r in records] == ["t0", "t1", "t2"]
            assert (await backend.count_jobs())["default"][JobStatus.QUEUED] == 3

            proxy.drop_next = True
            got = await backend.acquire(Q, "w", 2, LEASE)
            assert proxy.dropped == 2
            assert [(j.task_name, j.attempts, j.lease_token) for j in got] == [
                ("t0", 1, 1),
                ("t1", 1, 1),
            ]
            assert [j.task_name for j in await backend.acquire(Q, "w2", 10, LEASE)] == ["t2"]

            proxy.drop_next = True
            done = [Release(j.lease, Outcome.success(b"2")) for j in got]
            assert await backend.release("w", done) == [True, True]
            assert proxy.dropped == 3
            assert await backend.release("w", done) == [False, False]  # a new call is refused

            proxy.drop_next = True
            tick = datetime(2026, 1, 2, tzinfo=timezone.utc)
            assert await backend.claim_schedule_tick("s", tick, new("tick")) is True
            assert proxy.dropped == 4
            assert len(await backend.list_jobs(task_name="tick")) == 1
        finally:
            await backend.close()


async def test_a_retried_acquire_is_answered_as_its_first_try_after_another_acquire(
    shared_url: str,
) -> None:
    # A worker leasing ahead has two exchanges under way: an acquire retried after a lost
    # reply must find its own jobs, though another acquire of the same worker ran since.
    backend = await open_redis(shared_url)
    try:
        await backend.enqueue_many([new(f"t{i}") for i in range(6)])
        now = datetime.now(timezone.utc)
        head: list[str | bytes | int] = [to_us(now), to_us(now + LEASE), "w", 2]

        def ids(reply: list[bytes | list[bytes | None]]) -> list[bytes | None]:
            return [
                item[0] if isinstance(item, list) else unpack_record(item)[b"id"] for item in reply
            ]

        first = ids(await backend._run("acquire", [*head, "nonce-a", *Q]))
        second = ids(await backend._run("acquire", [*head, "nonce-b", *Q]))
        retried = ids(await backend._run("acquire", [*head, "nonce-a", *Q]))
        assert len(set(first + second)) == 4
        assert retried == first
        counts = (await backend.count_jobs())["default"]
        assert (counts[JobStatus.RUNNING], counts[JobStatus.QUEUED]) == (4, 2)
    finally:
        await backend.close()


async def test_enqueue_during_an_outage_raises_backend_error(server: PrivateRedis) -> None:
    app = make_app(f"{server.url}?retry_for=0.5", os.devnull)
    task = record_task(app)
    try:
        first = await task.enqueue(1)
        server.stop()
        started = time.monotonic()
        with pytest.raises(BackendError) as caught:
            await task.enqueue(2)
        elapsed = time.monotonic() - started
        message = str(caught.value)
        assert f"Redis at redis://127.0.0.1:{server.port}/0 is unreachable" in message
        assert "enqueue failed after retrying for 0.5 s" in message
        assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
        assert 0.4 <= elapsed < 3
        server.start()
        second = await task.enqueue(3)  # the same connection pool reconnects
        assert (await app.get_job(first.id)) is not None  # acknowledged: it survived
        assert (await app.get_job(second.id)) is not None
    finally:
        await app.close()


async def test_a_restarted_server_is_reconnected_and_wakes_waiters(server: PrivateRedis) -> None:
    waiting, producer = await open_redis(server.url), await open_redis(server.url)
    try:
        job = await producer.enqueue(new())
        assert await waiting.wait_for_work(Q, 0.1) is True
        server.restart()
        (got,) = await waiting.acquire(Q, "w", 10, LEASE)
        assert got.id == job.id
        # The wake-up subscription comes back by itself.
        for _ in range(100):
            waiter = asyncio.create_task(waiting.wait_for_work(Q, 10.0))
            await asyncio.sleep(0.05)
            if not waiter.done():
                break
            await waiter
        started = time.monotonic()
        await producer.enqueue(new())
        assert await asyncio.wait_for(waiter, 5) is True
        assert time.monotonic() - started < 1
    finally:
        await waiting.close()
        await producer.close()


# -- worker processes -------------------------------------------------------------------------


class Workers:
    """Worker subprocesses running ``tests.queue_apps.redis_app``, their output in files."""

    def __init__(self, directory: Path, url: str, log: Path, *, schedule: bool = False) -> None:
        self.directory = directory
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "UNDERWAY_REDIS_APP_URL": url,
            "UNDERWAY_REDIS_APP_LOG": str(log),
        }
        if schedule:
            self.env["UNDERWAY_REDIS_APP_SCHEDULE"] = "1"
        self.processes: list[subprocess.Popen[bytes]] = []

    def output(self, i: int) -> str:
        return (self.directory / f"worker{i}.out").read_text(errors="replace")

    def start(self, count: int, concurrency: int, lease: float) -> None:
        """Start ``count`` workers and wait until each takes jobs."""
        first = len(self.processes)
        for i in range(first, first + count):
            with open(self.directory / f"worker{i}.out", "wb") as out:
                self.processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-c",
                            "from tests.queue_apps.redis_app import main; main()",
                            str(concurrency),
                            str(lease),
                        ],
                        cwd=ROOT,
                        env=self.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        deadline = time.monotonic() + 30
        for i in range(first, first + count):
            while "ready" not in self.output(i):
                if self.processes[i].poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"worker {i} did not start:\n{self.output(i)}")
                time.sleep(0.02)

    def kill(self, i: int) -> None:
        self.processes[i].send_signal(signal.SIGKILL)
        self.processes[i].wait()

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM every worker still running and wait for it; SIGKILL those that hang."""
        alive = [p for p in self.processes if p.poll() is None]
        for process in alive:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in alive:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Workers]]:
    made: list[Workers] = []

    def make(url: str, log: Path, *, schedule: bool = False) -> Workers:
        group = Workers(tmp_path, url, log, schedule=schedule)
        made.append(group)
        return group

    yield make
    for group in made:
        group.stop(timeout=5)


def executions(log: Path) -> Counter[int]:
    """How many times each job number ran, from the lines ``n pid`` of the log."""
    if not log.exists():
        return Counter()
    return Counter(int(line.split()[0]) for line in log.read_text().splitlines() if line)


async def wait_for_succeeded(backend: Backend, total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        counts = (await backend.count_jobs()).get("default", {})
        if counts.get(JobStatus.SUCCEEDED, 0) >= total:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not all {total} jobs succeeded in {timeout} s: {counts}")
        await asyncio.sleep(0.05)


async def wait_for_lines(log: Path, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while sum(executions(log).values()) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {count} runs logged in {timeout} s")
        await asyncio.sleep(0.01)


async def enqueue_numbers(url: str, numbers: range, pause: float = 0.0) -> float:
    """Enqueue one ``record(n, pause)`` job per number in batches; return the rate per second."""
    app = make_app(url, os.devnull)
    task = record_task(app)
    try:
        started = time.perf_counter()
        for start in range(numbers.start, numbers.stop, 1000):
            batch = range(start, min(start + 1000, numbers.stop))
            await task.enqueue_many(((n, pause), {}) for n in batch)
        return len(numbers) / (time.perf_counter() - started)
    finally:
        await app.close()


async def test_three_worker_processes_run_every_job_exactly_once(
    shared_url: str, tmp_path: Path, workers: Callable[..., Workers]
) -> None:
    total = 10_000
    log = tmp_path / "runs.log"
    rate = await enqueue_numbers(shared_url, range(total))
    group = workers(shared_url, log)
    group.start(3, concurrency=20, lease=10)
    started = time.perf_counter()
    backend = await open_redis(shared_url)
    try:
        await wait_for_succeeded(backend, total, timeout=50)
    finally:
        await backend.close()
    elapsed = time.perf_counter() - started
    group.stop()
    runs = executions(log)
    print(
        f"\n10,000 jobs: enqueued at {rate:,.0f}/s; 3 workers ran them in {elapsed:.2f} s "
        f"({total / elapsed:,.0f}/s)"
    )
    assert set(runs) == set(range(total))
    assert [n for n, times in runs.items() if times > 1] == []


async def test_a_schedule_fires_once_per_tick_across_three_processes(
    shared_url: str, tmp_path: Path, workers: Callable[..., Workers]
) -> None:
    log = tmp_path / "ticks.log"
    group = workers(shared_url, log, schedule=True)
    group.start(3, concurrency=4, lease=5)
    started = time.time()
    await asyncio.sleep(10)
    ended = time.time()
    group.stop()
    ticks = [float(line.split()[1]) for line in log.read_text().splitlines()]
    inside = [t for t in ticks if started <= t < ended]
    seconds = Counter(int(t) for t in ticks)
    print(f"\nschedule every 1 s over 10 s with 3 workers: {len(inside)} runs")
    assert 9 <= len(inside) <= 11
    assert max(seconds.values()) == 1  # never twice for one tick
    assert len({line.split()[2] for line in log.read_text().splitlines()}) >= 1


async def test_a_worker_killed_mid_run_loses_no_job(
    tmp_path: Path, server: PrivateRedis, workers: Callable[..., Workers]
) -> None:
    total = 3000
    log = tmp_path / "runs.log"
    await enqueue_numbers(server.url, range(total), pause=0.02)
    group = workers(server.url, log)
    group.start(2, concurrency=10, lease=1)
    await wait_for_lines(log, 500)
    group.kill(0)
    killed_at = sum(executions(log).values())
    backend = await open_redis(server.url)
    try:
        await wait_for_succeeded(backend, total, timeout=40)
        counts = await backend.count_jobs()
        jobs = await backend.list_jobs(limit=total)
    finally:
        await backend.close()
    group.stop()
    runs = executions(log)
    lost = set(range(total)) - set(runs)
    duplicates = sum(times - 1 for times in runs.values())
    recovered = sum(1 for job in jobs if job.attempts > 1)
    print(
        f"\nworker SIGKILLed after {killed_at} of {total} runs: {recovered} job(s) recovered "
        f"after its leases expired, {len(lost)} lost, {duplicates} duplicate run(s)"
    )
    assert recovered >= 1  # the killed worker held jobs, and they ran again elsewhere
    assert lost == set()
    assert counts == {"default": {JobStatus.SUCCEEDED: total}}
    # Only runs the killed worker finished but had not recorded can run twice: at most its
    # jobs in flight (concurrency 10) and the outcomes waiting to be written (as many).
    assert duplicates <= 20


async def test_a_redis_restart_mid_run_loses_no_job(
    tmp_path: Path, server: PrivateRedis, workers: Callable[..., Workers]
) -> None:
    total = 3000
    log = tmp_path / "runs.log"
    await enqueue_numbers(server.url, range(2000), pause=0.01)
    group = workers(server.url, log)
    group.start(2, concurrency=10, lease=1)
    await wait_for_lines(log, 300)
    server.stop()
    stopped_at = sum(executions(log).values())
    await asyncio.sleep(0.5)
    server.start()
    await enqueue_numbers(server.url, range(2000, total), pause=0.01)
    backend = await open_redis(server.url)
    try:
        await wait_for_succeeded(backend, total, timeout=40)
        counts = await backend.count_jobs()
    finally:
        await backend.close()
    group.stop()
    runs = executions(log)
    lost = set(range(total)) - set(runs)
    duplicates = sum(times - 1 for times in runs.values())
    print(
        f"\nRedis restarted after {stopped_at} of {total} runs (0.5 s down): {len(lost)} lost, "
        f"{duplicates} duplicate run(s)"
    )
    assert lost == set()
    assert counts == {"default": {JobStatus.SUCCEEDED: total}}
    for i in range(2):
        assert group.processes[i].returncode == 0, group.output(i)


async def test_concurrent_calls_share_one_connection_and_get_their_own_replies(
    shared_url: str,
) -> None:
    backend = await open_redis(shared_url)
    try:
        jobs = [new(f"t{i}") for i in range(100)]
        records = await asyncio.gather(*(backend.enqueue(job) for job in jobs))
        assert [r.id for r in records] == [j.id for j in jobs]
        assert [r.task_name for r in records] == [f"t{i}" for i in range(100)]
        # Acquires and releases in flight together: every job leased once, each reply to
        # the caller that asked.
        batches = await asyncio.gather(*(backend.acquire(Q, f"w{i}", 7, LEASE) for i in range(20)))
        taken = [job for batch in batches for job in batch]
        assert sorted(j.id for j in taken) == sorted(j.id for j in jobs)
        for i, batch in enumerate(batches):
            assert all(job.lease_owner == f"w{i}" for job in batch)
        results = await asyncio.gather(
            *(
                backend.release(f"w{i}", [Release(j.lease, Outcome.success(b"1")) for j in batch])
                for i, batch in enumerate(batches)
            )
        )
        assert results == [[True] * len(batch) for batch in batches]
        assert (await backend.count_jobs())["default"] == {JobStatus.SUCCEEDED: 100}
    finally:
        await backend.close()


async def test_a_cancelled_call_does_not_shift_the_replies_of_the_others(
    shared_url: str,
) -> None:
    backend = await open_redis(shared_url)
    try:
        await backend.enqueue(new("first"))  # the connection is open
        calls = [asyncio.ensure_future(backend.enqueue(new(f"t{i}"))) for i in range(30)]
        await asyncio.sleep(0)  # every call has written its command
        calls[5].cancel()
        calls[17].cancel()
        done = await asyncio.gather(*calls, return_exceptions=True)
        for i, result in enumerate(done):
            if i in (5, 17):
                continue
            assert not isinstance(result, BaseException), result
            assert result.task_name == f"t{i}"
        # The connection is still in step: a later call gets its own reply.
        later = await backend.enqueue(new("later"))
        stored = await backend.get_job(later.id)
        assert stored is not None and stored.task_name == "later"
    finally:
        await backend.close()
