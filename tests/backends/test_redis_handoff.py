"""Redis hands new jobs straight to idle workers (``RedisBackend.wait_for_jobs``).

An idle worker is registered on its queues while it waits; an enqueue that finds it leases
the job to it and pushes the record onto the worker's own list, which its blocking read
takes at once. What these tests hold the backend to: a handed job is leased exactly as an
acquire would lease it, never more jobs than the worker's free slots, nothing handed is
lost (what the wait did not return comes with the next acquire, or goes back to the queue
when the wait is cancelled), and a worker whose wait ended is handed nothing.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.backends.redis_support import redis_url
from underway.backends import backend_from_url
from underway.backends._redis_records import to_us
from underway.backends.redis import RedisBackend
from underway.job import JobStatus, NewJob, Outcome, Release, WorkerInfo

LEASE = timedelta(seconds=30)
Q = ["default"]


def new(task: str = "t", **options: object) -> NewJob:
    return NewJob(task, b'{"args":[],"kwargs":{}}', **options)  # type: ignore[arg-type]


@pytest.fixture
def url(request: pytest.FixtureRequest) -> str:
    return redis_url(request)


async def open_redis(url: str) -> RedisBackend:
    backend = backend_from_url(url)
    assert isinstance(backend, RedisBackend)
    await backend.open()
    return backend


async def registered(backend: RedisBackend, worker: str) -> None:
    """Wait until ``worker`` is registered as idle (its wait has begun)."""
    assert backend._client is not None
    key = backend._key("idler", worker)
    deadline = time.monotonic() + 5
    while not await backend._client.exists(key):
        assert time.monotonic() < deadline, f"{worker} never started waiting"
        await asyncio.sleep(0.005)


async def counts(backend: RedisBackend) -> dict[JobStatus, int]:
    return (await backend.count_jobs()).get("default", {})


async def test_an_enqueue_hands_its_job_to_a_waiting_worker(url: str) -> None:
    worker, producer = await open_redis(url), await open_redis(url)
    try:
        waiting = asyncio.create_task(worker.wait_for_jobs("w", Q, 2, LEASE, 10.0))
        await registered(worker, "w")
        started = time.monotonic()
        (stored,) = await producer.enqueue_many([new("first")])
        (handed,) = await asyncio.wait_for(waiting, 5)
        assert time.monotonic() - started < 1.0  # not at the end of the wait
        # Leased as an acquire leases: running, first attempt, fencing token 1, this worker.
        assert (handed.id, handed.task_name, handed.status) == (
            stored.id,
            "first",
            JobStatus.RUNNING,
        )
        assert (handed.attempts, handed.lease_token, handed.lease_owner) == (1, 1, "w")
        assert handed.lease_expires_at is not None and handed.started_at is not None
        assert handed.lease_expires_at - handed.started_at == LEASE
        # The producer is told the truth: the job it stored is running already.
        assert (stored.status, stored.lease_owner) == (JobStatus.RUNNING, "w")
        assert await counts(producer) == {JobStatus.RUNNING: 1}
        # The lease is a real one: the worker's outcome is accepted.
        assert await worker.release("w", [Release(handed.lease, Outcome.success(b"1"))]) == [True]
        assert await counts(producer) == {JobStatus.SUCCEEDED: 1}
    finally:
        await worker.close()
        await producer.close()


async def test_a_worker_is_handed_no_more_jobs_than_its_free_slots(url: str) -> None:
    worker, producer = await open_redis(url), await open_redis(url)
    try:
        waiting = asyncio.create_task(worker.wait_for_jobs("w", Q, 2, LEASE, 10.0))
        await registered(worker, "w")
        await producer.enqueue_many([new(f"t{i}") for i in range(5)])
        (first,) = await asyncio.wait_for(waiting, 5)
        assert first.task_name == "t0"
        assert await counts(producer) == {JobStatus.RUNNING: 2, JobStatus.QUEUED: 3}
        # The second handed job was not returned by the wait: the next acquire returns it
        # first, then leases from the queue up to its limit.
        got = await worker.acquire(Q, "w", 2, LEASE)
        assert [(j.task_name, j.status, j.attempts) for j in got] == [
            ("t1", JobStatus.RUNNING, 1),
            ("t2", JobStatus.RUNNING, 1),
        ]
        assert await counts(producer) == {JobStatus.RUNNING: 3, JobStatus.QUEUED: 2}
    finally:
        await worker.close()
        await producer.close()


async def test_a_worker_that_acquired_is_handed_nothing_more(url: str) -> None:
    worker, producer = await open_redis(url), await open_redis(url)
    try:
        waiting = asyncio.create_task(worker.wait_for_jobs("w", Q, 5, LEASE, 10.0))
        await registered(worker, "w")
        await producer.enqueue(new("first"))
        assert len(await asyncio.wait_for(waiting, 5)) == 1
        assert [j.task_name for j in await worker.acquire(Q, "w", 4, LEASE)] == []
        # No longer waiting: the next job waits in the queue for whoever acquires.
        assert (await producer.enqueue(new("second"))).status is JobStatus.QUEUED
        assert await counts(producer) == {JobStatus.RUNNING: 1, JobStatus.QUEUED: 1}
    finally:
        await worker.close()
        await producer.close()


async def test_a_cancelled_wait_is_handed_nothing(url: str) -> None:
    worker, producer = await open_redis(url), await open_redis(url)
    try:
        waiting = asyncio.create_task(worker.wait_for_jobs("w", Q, 5, LEASE, 10.0))
        await registered(worker, "w")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (await producer.enqueue(new())).status is JobStatus.QUEUED
        assert await counts(producer) == {JobStatus.QUEUED: 1}
        assert await worker.acquire(Q, "w", 5, LEASE) != []
    finally:
        await worker.close()
        await producer.close()


class HoldingProxy:
    """A TCP proxy to Redis that can hold back the server's replies until told to let go.

    With it, a handed job's record is on its way to the worker, but not there yet, when
    the worker stops waiting: what a stop at the worst moment looks like.
    """

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.host, self.target_port = host, int(port)
        self.port = 0
        self._let_go = asyncio.Event()
        self._let_go.set()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    def hold(self) -> None:
        self._let_go.clear()

    def let_go(self) -> None:
        self._let_go.set()

    async def __aenter__(self) -> HoldingProxy:
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
        up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        self._writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, held: bool) -> None:
            while data := await src.read(65536):
                if held:
                    await self._let_go.wait()
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(
            pump(reader, up_writer, False), pump(up_reader, writer, True), return_exceptions=True
        )


async def test_a_cancelled_wait_puts_the_jobs_handed_to_it_back(url: str) -> None:
    base, _, query = url.partition("/0?")
    async with HoldingProxy(base.removeprefix("redis://")) as proxy:
        worker = await open_redis(f"redis://127.0.0.1:{proxy.port}/0?{query}")
        producer = await open_redis(url)
        try:
            waiting = asyncio.create_task(worker.wait_for_jobs("w", Q, 5, LEASE, 10.0))
            await registered(worker, "w")
            proxy.hold()  # the record pushed to the worker stays in the proxy
            (stored,) = await producer.enqueue_many([new()])
            assert stored.status is JobStatus.RUNNING  # handed to "w"
            await asyncio.sleep(0.05)
            waiting.cancel()
            asyncio.get_running_loop().call_later(0.1, proxy.let_go)
            with pytest.raises(asyncio.CancelledError):
                await waiting
            # The handed job went back to its queue, its attempt not counted.
            job = await producer.get_job(stored.id)
            assert job is not None
            assert (job.status, job.attempts, job.lease_owner) == (JobStatus.QUEUED, 0, None)
            (again,) = await producer.acquire(Q, "other", 5, LEASE)
            assert (again.id, again.attempts, again.lease_token) == (stored.id, 1, 2)
        finally:
            await worker.close()
            await producer.close()


async def test_the_registration_of_a_worker_whose_wait_ended_hands_nothing(url: str) -> None:
    worker, producer = await open_redis(url), await open_redis(url)
    try:
        # A worker that died while waiting: its registration ended a second ago.
        now = datetime.now(timezone.utc)
        ended = to_us(now - timedelta(seconds=1))
        lease = LEASE // timedelta(microseconds=1)
        assert await worker._run("idle", [to_us(now), "gone", 5, lease, ended, *Q]) == 0
        assert (await producer.enqueue(new())).status is JobStatus.QUEUED
        assert await counts(producer) == {JobStatus.QUEUED: 1}
    finally:
        await worker.close()
        await producer.close()


async def test_a_job_that_comes_due_wakes_a_waiting_worker(url: str) -> None:
    worker, other = await open_redis(url), await open_redis(url)
    try:
        await other.enqueue(new())
        (running,) = await other.acquire(Q, "other", 1, LEASE)
        waiting = asyncio.create_task(worker.wait_for_jobs("w", Q, 5, LEASE, 10.0))
        await registered(worker, "w")
        # Another worker's job fails and is retried now: due again, in the queue.
        retry = Outcome.retry(datetime.now(timezone.utc), "boom")
        assert await other.release("other", [Release(running.lease, retry)]) == [True]
        started = time.monotonic()
        assert await asyncio.wait_for(waiting, 5) == []  # woken, not handed the job
        assert time.monotonic() - started < 1.0
        assert [j.attempts for j in await worker.acquire(Q, "w", 5, LEASE)] == [2]
    finally:
        await worker.close()
        await other.close()


async def test_a_wait_ends_when_a_scheduled_job_comes_due(url: str) -> None:
    backend = await open_redis(url)
    try:
        at = datetime.now(timezone.utc) + timedelta(seconds=0.3)
        await backend.enqueue(new(scheduled_at=at))
        started = time.monotonic()
        assert await backend.wait_for_jobs("w", Q, 5, LEASE, 10.0) == []
        assert 0.2 <= time.monotonic() - started < 2.0
        assert len(await backend.acquire(Q, "w", 5, LEASE)) == 1
    finally:
        await backend.close()


async def test_a_wait_with_work_due_returns_at_once(url: str) -> None:
    backend = await open_redis(url)
    try:
        await backend.enqueue(new())
        started = time.monotonic()
        assert await backend.wait_for_jobs("w", Q, 5, LEASE, 10.0) == []
        assert time.monotonic() - started < 0.5
        assert await counts(backend) == {JobStatus.QUEUED: 1}  # left for the acquire
    finally:
        await backend.close()


async def test_unregistering_and_pruning_a_worker_drop_its_registration(url: str) -> None:
    backend, producer = await open_redis(url), await open_redis(url)
    try:
        now = datetime.now(timezone.utc)
        lease = LEASE // timedelta(microseconds=1)
        ends = to_us(now + timedelta(seconds=60))
        # A worker that stops cleanly unregisters; its wait's registration goes with it.
        assert await backend._run("idle", [to_us(now), "w", 5, lease, ends, *Q]) == 0
        await backend.unregister_worker("w")
        assert (await producer.enqueue(new())).status is JobStatus.QUEUED
        # A worker that died: pruned from the registry, and handed nothing more.
        info = WorkerInfo("dead", "host", 1, ("other",), 5, now - timedelta(hours=1))
        await backend.register_worker(info)
        assert await backend._run("idle", [to_us(now), "dead", 5, lease, ends, "other"]) == 0
        await asyncio.sleep(0.01)
        assert await backend.prune_workers(timedelta(0)) == 1
        assert (await producer.enqueue(new(queue="other"))).status is JobStatus.QUEUED
    finally:
        await backend.close()
        await producer.close()


async def test_a_worker_that_unregisters_puts_back_the_jobs_it_did_not_take(url: str) -> None:
    worker, producer = await open_redis(url), await open_redis(url)
    try:
        waiting = asyncio.create_task(worker.wait_for_jobs("w", Q, 2, LEASE, 10.0))
        await registered(worker, "w")
        first, second = await producer.enqueue_many([new("first"), new("second")])
        (taken,) = await asyncio.wait_for(waiting, 5)
        assert taken.id == first.id
        assert second.status is JobStatus.RUNNING  # handed over, never taken
        await worker.unregister_worker("w")
        back = await producer.get_job(second.id)
        assert back is not None
        assert (back.status, back.attempts, back.lease_owner) == (JobStatus.QUEUED, 0, None)
        assert await counts(producer) == {JobStatus.RUNNING: 1, JobStatus.QUEUED: 1}
    finally:
        await worker.close()
        await producer.close()
