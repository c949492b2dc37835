"""underway.current_job(): what a running task knows about its job, and progress."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import underway
from tests.queue_apps.harness import KINDS, backend_url, running, wait_until
from underway import JobContext, JobFailed, Underway, UnderwayError


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request.param, tmp_path)


@pytest.fixture
async def uw(url: str) -> AsyncIterator[Underway]:
    app = Underway(url)
    yield app
    await app.close()


def test_current_job_outside_a_job_raises() -> None:
    with pytest.raises(UnderwayError, match="outside a job"):
        underway.current_job()


async def test_current_job_describes_the_running_job(uw: Underway) -> None:
    seen: list[JobContext] = []

    @uw.task(retries=2, retry_backoff=0.01)
    async def introspect() -> str:
        context = underway.current_job()
        seen.append(context)
        if context.attempt == 1:
            raise RuntimeError("try again")
        return context.id

    job = await introspect.enqueue()
    async with running(uw):
        assert await job.result(timeout=5) == job.id
    assert [(c.attempt, c.max_attempts) for c in seen] == [(1, 3), (2, 3)]
    assert {c.task_name for c in seen} == {introspect.name}
    with pytest.raises(UnderwayError):
        underway.current_job()  # the worker reset it after the run


async def test_progress_of_an_async_task_is_stored_and_visible(uw: Underway) -> None:
    halfway = asyncio.Event()
    finish = asyncio.Event()

    @uw.task
    async def import_rows(total: int) -> int:
        job = underway.current_job()
        for step in range(total // 2):
            job.progress((step + 1) / total, f"row {step + 1} of {total}")
        halfway.set()
        await finish.wait()
        job.progress(1.0, "all rows")
        return total

    job = await import_rows.enqueue(10)
    async with running(uw):
        await asyncio.wait_for(halfway.wait(), 5)

        async def stored() -> bool:
            found = await uw.get_job(job.id)
            assert found is not None
            return found.progress == 0.5 and found.progress_message == "row 5 of 10"

        await wait_until(stored, what="progress 0.5 to be stored")
        finish.set()
        assert await job.result(timeout=5) == 10


async def test_progress_from_a_thread_task(uw: Underway) -> None:
    gate = threading.Event()
    loop_thread = threading.get_ident()
    threads: list[int] = []

    @uw.task
    def crunch() -> str:
        threads.append(threading.get_ident())
        underway.current_job().progress(0.25, "a quarter")
        gate.wait(5)
        return "crunched"

    job = await crunch.enqueue()
    async with running(uw):

        async def stored() -> bool:
            await job.refresh()
            return job.progress == 0.25 and job.progress_message == "a quarter"

        await wait_until(stored, what="the thread's progress to be stored")
        gate.set()
        assert await job.result(timeout=5) == "crunched"
    assert threads and threads[0] != loop_thread


async def test_progress_writes_are_coalesced_and_the_latest_wins(uw: Underway) -> None:
    done = asyncio.Event()

    @uw.task
    async def chatty() -> None:
        job = underway.current_job()
        for i in range(1, 1001):
            job.progress(i / 1000)
        await asyncio.sleep(0.1)
        done.set()
        await asyncio.sleep(10)

    job = await chatty.enqueue()
    async with running(uw):
        await asyncio.wait_for(done.wait(), 5)

        async def latest() -> bool:
            await job.refresh()
            return job.progress == 1.0

        await wait_until(latest, what="the last progress to be stored")
        assert job.progress_message is None


async def test_invalid_progress_fails_the_task(uw: Underway) -> None:
    @uw.task(retries=0)
    async def overshoot() -> None:
        underway.current_job().progress(1.5)

    job = await overshoot.enqueue()
    async with running(uw):
        with pytest.raises(JobFailed, match=r"progress must be a number from 0\.0 to 1\.0"):
            await job.result(timeout=5)
