"""The Underway app: URLs, the store's lifetime, registration, sync producers."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.queue_apps.harness import KINDS, backend_url, running, sql
from tests.subprocess_helpers import Child
from underway import JobStatus, Underway
from underway.backends.base import Backend


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request.param, tmp_path)


@pytest.fixture
async def uw(url: str) -> AsyncIterator[Underway]:
    app = Underway(url)
    yield app
    await app.close()


def test_a_bad_url_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown backend URL scheme"):
        Underway("mongodb://localhost")
    with pytest.raises(TypeError, match="url must be a string"):
        Underway(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="names no database file"):
        Underway("sqlite://")
    assert repr(Underway("memory://")) == "<Underway 'memory://' tasks=0>"


async def test_the_store_opens_on_first_use_and_once_per_event_loop(uw: Underway) -> None:
    first = await uw.backend()
    assert isinstance(first, Backend)
    assert await uw.backend() is first


async def test_concurrent_first_uses_share_one_open_store(url: str) -> None:
    app = Underway(url)

    @app.task
    async def ping(n: int) -> int:
        return n

    try:
        jobs = await asyncio.gather(*(ping.enqueue(i) for i in range(5)))
        assert sorted(j.args[0] for j in jobs) == [0, 1, 2, 3, 4]
        assert len(await (await app.backend()).list_jobs()) == 5
    finally:
        await app.close()


async def test_async_with_opens_and_closes_the_store(tmp_path: Path) -> None:
    url = backend_url("sqlite", tmp_path)
    async with Underway(url) as app:
        backend = await app.backend()

        @app.task
        async def noop() -> None: ...

        await noop.enqueue()
    # closed: a new use opens a new connection, and the job is still stored
    async with app:
        assert await app.backend() is not backend
        assert len(await (await app.backend()).list_jobs()) == 1
    assert sql(url, "SELECT count(*) FROM jobs") == [(1,)]


async def test_enqueue_sync_refuses_to_block_an_event_loop(uw: Underway) -> None:
    @uw.task
    def work() -> None: ...

    with pytest.raises(RuntimeError, match=r"await task\.enqueue"):
        work.enqueue_sync()


def test_enqueue_sync_from_plain_code_in_this_process(tmp_path: Path) -> None:
    url = backend_url("sqlite", tmp_path)
    app = Underway(url)

    @app.task(priority=3)
    def charge(order: int, cents: int) -> str:
        return f"{order}:{cents}"

    job = charge.enqueue_sync(1, 1999)
    later = charge.options(delay=60).enqueue_sync(2, 500)
    assert job.status is JobStatus.QUEUED
    assert later.status is JobStatus.SCHEDULED
    rows = sql(url, "SELECT id, status, priority FROM jobs ORDER BY seq")
    assert rows == [(job.id, "queued", 3), (later.id, "scheduled", 3)]

    async def run_them() -> str:
        async with running(app):
            return await job.result(timeout=5)

    assert asyncio.run(run_them()) == "1:1999"


def test_enqueue_sync_from_a_script(tmp_path: Path) -> None:
    url = backend_url("sqlite", tmp_path)
    script = tmp_path / "producer.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from underway import Underway

            uw = Underway({url!r})

            @uw.task(retries=5)
            def charge_card(order_id: int, cents: int) -> str:
                return f"charged {{order_id}}"

            for order_id, cents in [(1, 1999), (2, 500), (3, 12000)]:
                job = charge_card.enqueue_sync(order_id, cents)
                print("enqueued", job.id, job.status, flush=True)
            """
        )
    )
    code, output = Child(str(script), cwd=tmp_path).finish(timeout=20)
    assert code == 0, output
    assert output.count("enqueued") == 3
    rows = sql(url, "SELECT task_name, status, max_attempts, payload FROM jobs ORDER BY seq")
    assert [r[:3] for r in rows] == [("producer.charge_card", "queued", 6)] * 3
    assert rows[0][3] == b'{"args":[1,1999],"kwargs":{}}'


def test_durable_schedules_register_on_the_app() -> None:
    uw = Underway("memory://")

    @uw.loop(seconds=30)
    async def every_half_minute() -> None: ...

    @uw.cron("0 9 * * MON-FRI", timezone="Asia/Seoul", misfire="skip")
    def weekday_mornings() -> None: ...

    assert set(uw.schedules) == {every_half_minute.name, weekday_mornings.name}
    assert uw.schedules[every_half_minute.name].describe() == "every 30 s"
    assert uw.schedules[weekday_mornings.name].misfire == "skip"
    assert "cron 0 9 * * MON-FRI" in uw.schedules[weekday_mornings.name].describe()
    assert every_half_minute.name in uw.tasks  # a schedule's function is a task too


def test_invalid_schedules_are_refused() -> None:
    uw = Underway("memory://")

    async def job() -> None: ...

    with pytest.raises(ValueError, match="interval above zero"):
        uw.loop()(job)
    with pytest.raises(ValueError, match="misfire must be"):
        uw.loop(seconds=1, misfire="sometimes")(job)  # type: ignore[arg-type]
    uw.loop(seconds=1, name="job")(job)
    with pytest.raises(ValueError, match="already registered"):
        uw.loop(seconds=2, name="job")(job)
