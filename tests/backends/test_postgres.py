"""What the PostgreSQL backend promises beyond the contract: schema, notifications,
transactional enqueue, errors and URLs. Processes and faults: test_postgres_processes.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.backends.conftest import START, FakeClock
from tests.backends.postgres_support import (
    drop_schemas,
    postgres_url,
    require_postgres,
    unique_schema,
    wait_for_listener,
)
from underway.backends import backend_from_url
from underway.backends._postgres_schema import load_migrations, migrate
from underway.backends.base import exhausted_reason
from underway.backends.postgres import PostgresBackend
from underway.errors import BackendError
from underway.job import JobStatus, NewJob, Outcome, Release

LEASE = timedelta(seconds=30)
ROOT = Path(__file__).resolve().parents[2]
Q = ["default"]


def new(task: str = "t", **options: object) -> NewJob:
    return NewJob(task, b'{"args":[],"kwargs":{}}', **options)  # type: ignore[arg-type]


def open_pg(url: str, clock: FakeClock | None = None) -> PostgresBackend:
    backend = backend_from_url(url) if clock is None else backend_from_url(url, clock=clock)
    assert isinstance(backend, PostgresBackend)
    return backend


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    """A URL with a schema of this test's own (polling rarely: notifications must wake)."""
    return postgres_url(request, poll_interval="30")


@pytest.fixture
async def pg(pg_url: str, clock: FakeClock) -> AsyncIterator[PostgresBackend]:
    async with open_pg(pg_url, clock) as backend:
        yield backend


@pytest.fixture
async def conn() -> AsyncIterator[asyncpg.Connection[Any]]:
    """A plain connection to the shared server, as an application would hold one."""
    connection = await asyncpg.connect(require_postgres())
    try:
        yield connection
    finally:
        await connection.close()


# -- schema -----------------------------------------------------------------------------------


async def describe(conn: asyncpg.Connection[Any], schema: str) -> dict[str, Any]:
    """The structure of a schema: columns, indexes and constraints, the schema name removed."""
    columns = await conn.fetch(
        """SELECT table_name, ordinal_position, column_name, data_type, is_nullable,
                  column_default, is_identity
           FROM information_schema.columns WHERE table_schema = $1
           ORDER BY table_name, ordinal_position""",
        schema,
    )
    indexes = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY 1", schema
    )
    constraints = await conn.fetch(
        """SELECT t.relname, c.conname, pg_get_constraintdef(c.oid)
           FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
           JOIN pg_namespace n ON n.oid = t.relnamespace
           WHERE n.nspname = $1 ORDER BY 1, 2""",
        schema,
    )
    return {
        "columns": [tuple(row) for row in columns],
        "indexes": [(name, sql.replace(f"{schema}.", "")) for name, sql in indexes],
        "constraints": [tuple(row) for row in constraints],
    }


async def test_migrations_yield_the_documented_schema(conn: asyncpg.Connection[Any]) -> None:
    migrated, reference = unique_schema(), unique_schema()
    try:
        assert await migrate(conn, migrated) == len(load_migrations())
        assert await migrate(conn, migrated) == len(load_migrations())  # changes nothing
        sql = resources.files("underway.backends").joinpath("sql/postgres/schema.sql")
        async with conn.transaction():
            await conn.execute(f'CREATE SCHEMA "{reference}"')
            await conn.execute(f'SET LOCAL search_path TO "{reference}"')
            await conn.execute(sql.read_text("utf-8"))
        shape = await describe(conn, migrated)
        assert shape["columns"]
        assert shape == await describe(conn, reference)
        versions = await conn.fetch(f'SELECT version FROM "{migrated}".schema_version')
        assert [v for (v,) in versions] == [v for v, _, _ in load_migrations()]
    finally:
        drop_schemas([migrated, reference])


async def test_concurrent_openers_migrate_once(pg_url: str) -> None:
    # Without the advisory lock, concurrent CREATE SCHEMA / CREATE TABLE fail on conflicts.
    connections = [await asyncpg.connect(require_postgres()) for _ in range(4)]
    schema = unique_schema()
    try:
        versions = await asyncio.gather(*(migrate(c, schema) for c in connections))
        assert versions == [len(load_migrations())] * 4
        rows = await connections[0].fetch(f'SELECT version FROM "{schema}".schema_version')
        assert len(rows) == len(load_migrations())
    finally:
        await asyncio.gather(*(c.close() for c in connections))
        drop_schemas([schema])
    backends = [open_pg(pg_url) for _ in range(4)]
    await asyncio.gather(*(b.open() for b in backends))
    try:
        await asyncio.gather(*(b.enqueue(new()) for b in backends))
        assert len(await backends[0].list_jobs()) == 4
    finally:
        await asyncio.gather(*(b.close() for b in backends))


async def test_a_newer_schema_is_refused(pg_url: str, conn: asyncpg.Connection[Any]) -> None:
    async with open_pg(pg_url) as backend:
        await conn.execute(f'INSERT INTO "{backend.schema}".schema_version VALUES (999)')
    with pytest.raises(BackendError, match="schema version 999, newer"):
        await open_pg(pg_url).open()


async def test_dead_reasons_use_the_shared_wording(pg: PostgresBackend, clock: FakeClock) -> None:
    await pg.enqueue(new(max_attempts=2))
    job = await pg.acquire(Q, "w", 1, LEASE)
    await pg.release("w", [Release(job[0].lease, Outcome.retry(clock.now, "E: 1"))])
    (again,) = await pg.acquire(Q, "w", 1, LEASE)
    await pg.release("w", [Release(again.lease, Outcome.failure("E: 2"))])
    failed = await pg.get_job(again.id)
    assert failed is not None
    assert failed.dead_reason == exhausted_reason(2, "the task failed")
    await pg.enqueue(new(max_attempts=1))
    await pg.acquire(Q, "w", 1, LEASE)
    clock.advance(31)
    (reaped,) = await pg.reap_expired()
    assert reaped.dead_reason == exhausted_reason(1, "the lease expired (the worker stopped)")


async def test_unique_keys_within_a_batch_and_against_stored_jobs(pg: PostgresBackend) -> None:
    held = await pg.enqueue(new(unique_key="a"))
    records = await pg.enqueue_many(
        [new(unique_key="a"), new(unique_key="b"), new(unique_key="b"), new(), new("x")]
    )
    assert records[0] == held
    assert records[2] == records[1]
    assert records[1].unique_key == "b"
    assert len({r.id for r in records}) == 4
    assert len(await pg.list_jobs()) == 4  # a, b and the two without a key


# -- notifications ----------------------------------------------------------------------------


async def wake_time(waiting: PostgresBackend, producer: PostgresBackend) -> float:
    """Seconds from an enqueue through ``producer`` to ``waiting.wait_for_work`` returning."""
    waiter = asyncio.create_task(waiting.wait_for_work(Q, 20.0))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    started = time.monotonic()
    await producer.enqueue(new())
    assert await asyncio.wait_for(waiter, 10) is True
    elapsed = time.monotonic() - started
    assert await producer.acquire(Q, "w", 100, LEASE)  # nothing due for the next wait
    return elapsed


async def test_notify_wakes_a_waiting_worker_in_another_connection_at_once(pg_url: str) -> None:
    # Polling every 30 s: only the notification can wake the waiter in time.
    async with open_pg(pg_url) as waiting, open_pg(pg_url) as producer:
        latencies = [await wake_time(waiting, producer) for _ in range(5)]
    assert max(latencies) < 0.1, latencies


async def test_notifications_are_per_queue(pg_url: str) -> None:
    async with open_pg(pg_url) as waiting, open_pg(pg_url) as producer:
        waiter = asyncio.create_task(waiting.wait_for_work(["mail"], 0.5))
        await asyncio.sleep(0.05)
        await producer.enqueue(new(queue="other"))
        assert await waiter is False


async def test_poll_finds_jobs_whose_notification_was_lost(
    request: pytest.FixtureRequest, conn: asyncpg.Connection[Any]
) -> None:
    url = postgres_url(request, poll_interval="0.1")
    async with open_pg(url) as waiting, open_pg(url) as producer:
        # A job stored without NOTIFY, as if the notification had been lost.
        waiter = asyncio.create_task(waiting.wait_for_work(Q, 10.0))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        started = time.monotonic()
        await conn.execute(
            f"""INSERT INTO "{waiting.schema}".jobs
                (id, task_name, queue, payload, status, enqueued_at, scheduled_at)
                VALUES ('silent', 't', 'default', '\\x7b7d', 'queued', now(), now())"""
        )
        assert await asyncio.wait_for(waiter, 5) is True
        assert time.monotonic() - started < 1.0
        # The listener's connection drops: notifications sent meanwhile are lost, the
        # backend listens again and wakes its waiters to look.
        await producer.acquire(Q, "w", 10, LEASE)
        old = await wait_for_listener(conn, waiting.channel)
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", old)
        new_pid = await wait_for_listener(conn, waiting.channel, not_pid=old)
        assert new_pid != old
        await asyncio.sleep(0.2)  # past the wake-up the reconnect gives (a hint, no job)
        assert await wake_time(waiting, producer) < 0.1


# -- transactional enqueue --------------------------------------------------------------------


async def test_enqueue_in_the_callers_transaction(
    pg_url: str, conn: asyncpg.Connection[Any]
) -> None:
    async with open_pg(pg_url) as backend, open_pg(pg_url) as waiting:
        schema = backend.schema
        await conn.execute(f'CREATE TABLE "{schema}".orders (id int PRIMARY KEY)')
        enqueued: list[str] = []

        async def place_order() -> None:
            async with conn.transaction():
                await conn.execute(f'INSERT INTO "{schema}".orders VALUES (1)')
                (record,) = await backend.enqueue_in(conn, [new("receipt")])
                enqueued.append(record.id)
                raise RuntimeError("payment failed")

        with pytest.raises(RuntimeError, match="payment failed"):
            await place_order()
        assert await backend.get_job(enqueued[0]) is None
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".orders') == 0

        waiter = asyncio.create_task(waiting.wait_for_work(Q, 20.0))
        async with conn.transaction():
            await conn.execute(f'INSERT INTO "{schema}".orders VALUES (2)')
            (committed,) = await backend.enqueue_in(conn, [new("receipt")])
            await asyncio.sleep(0.2)
            assert await backend.get_job(committed.id) is None  # invisible until commit
            assert not waiter.done()  # and nobody is told before it
            started = time.monotonic()
        assert await asyncio.wait_for(waiter, 5) is True
        assert time.monotonic() - started < 0.1
        assert await backend.get_job(committed.id) == committed
        (job,) = await backend.acquire(Q, "w", 5, LEASE)
        assert job.id == committed.id


async def test_enqueue_in_works_with_a_pool_connection(pg: PostgresBackend) -> None:
    pool = await asyncpg.create_pool(require_postgres(), min_size=1, max_size=1)
    try:
        async with pool.acquire() as connection, connection.transaction():
            records = await pg.enqueue_in(connection, [new(), new()])
        assert [r.id for r in await pg.list_jobs()] == [r.id for r in reversed(records)]
        async with pool.acquire() as connection:
            with pytest.raises(ValueError, match="unique"):
                async with connection.transaction():
                    await pg.enqueue_in(connection, [NewJob("t", b"{}", id=records[0].id)])
    finally:
        await pool.close()


# -- errors and URLs --------------------------------------------------------------------------


async def test_an_unreachable_server_is_a_clear_backend_error() -> None:
    backend = open_pg("postgresql://postgres@127.0.0.1:9/test?connect_timeout=2")
    with pytest.raises(BackendError, match=r"open the database.*127\.0\.0\.1:9/test"):
        await backend.open()
    with pytest.raises(BackendError, match="not open"):
        await backend.enqueue(new())


def test_postgres_urls() -> None:
    backend = open_pg(
        "postgresql://u:secret@db.example:6543/app?schema=jobs&pool_size=3"
        "&poll_interval=0.25&connect_timeout=2&sslmode=require"
    )
    assert (backend.schema, backend.pool_size, backend.poll_interval) == ("jobs", 3, 0.25)
    assert backend.connect_timeout == 2
    assert backend.channel == "underway:jobs"
    assert backend.dsn == "postgresql://u:secret@db.example:6543/app?sslmode=require"
    assert open_pg("postgres://localhost/app").schema == "underway"
    with pytest.raises(ValueError, match=r"bad option.*plain identifier"):
        open_pg("postgresql://localhost/app?schema=no-dashes")
    with pytest.raises(ValueError, match="bad option"):
        open_pg("postgresql://localhost/app?pool_size=0")
    with pytest.raises(ValueError, match="names no database"):
        open_pg("postgresql://localhost")


async def test_jobs_survive_close_and_reopen(pg_url: str, clock: FakeClock) -> None:
    async with open_pg(pg_url, clock) as first:
        job = await first.enqueue(new(priority=2, scheduled_at=START + timedelta(hours=1)))
    async with open_pg(pg_url, clock) as second:
        assert await second.get_job(job.id) == job
        assert (await second.count_jobs()) == {"default": {JobStatus.SCHEDULED: 1}}


def test_the_transactional_enqueue_example_runs(request: pytest.FixtureRequest) -> None:
    url = postgres_url(request)
    dsn, _, query = url.partition("?")
    schema = query.removeprefix("schema=")
    env = {"DATABASE_URL": f"{dsn}?search_path={schema}", "UNDERWAY_URL": url}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "postgres_transactional_enqueue.py")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "order 2 rolled back (the payment was declined): no order, no job",
        "orders stored: 1",
        "receipt for order 1",
    ]
