"""Job handles: result(timeout), refresh, cancel and the attributes of a snapshot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta, timezone
from pathlib import Path

import pytest

from tests.queue_apps.harness import KINDS, backend_url, running
from underway import Job, JobCancelled, JobFailed, JobStatus, Underway, UnderwayError


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request.param, tmp_path)


@pytest.fixture
async def uw(url: str) -> AsyncIterator[Underway]:
    app = Underway(url)
    yield app
    await app.close()


async def test_result_returns_what_the_task_returned(uw: Underway) -> None:
    @uw.task
    async def summarise(words: list[str]) -> dict[str, int]:
        return {"count": len(words), "longest": max(len(w) for w in words)}

    job = await summarise.enqueue(["a", "abc", "ab"])
    async with running(uw):
        result = await job.result(timeout=5)
    assert result == {"count": 3, "longest": 3}
    assert job.status is JobStatus.SUCCEEDED  # the handle refreshed itself while waiting
    assert job.is_finished()
    assert await job.result() == result  # a finished job answers at once


async def test_result_of_a_task_returning_none(uw: Underway) -> None:
    @uw.task
    def nothing() -> None:
        return None

    job = await nothing.enqueue()
    async with running(uw):
        await job.result(timeout=5)
    assert job.status is JobStatus.SUCCEEDED
    assert job.record.result == b"null"


async def test_result_times_out_when_the_job_has_not_finished(uw: Underway) -> None:
    @uw.task
    async def never_run() -> int:
        return 1

    job = await never_run.enqueue()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=rf"job {job.id} .* is still queued after 0.2 s"):
        await job.result(timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 1.0
    with pytest.raises(TimeoutError):
        await job.result(timeout=0)


async def test_result_raises_job_failed_with_error_and_traceback(uw: Underway) -> None:
    @uw.task(retries=0)
    async def divide(a: int, b: int) -> float:
        return a / b

    job = await divide.enqueue(1, 0)
    async with running(uw):
        with pytest.raises(JobFailed) as info:
            await job.result(timeout=5)
    assert info.value.job is job
    assert job.status is JobStatus.DEAD
    assert job.error == "ZeroDivisionError: division by zero"
    assert job.traceback is not None and "return a / b" in job.traceback
    assert job.dead_reason == "retries exhausted: the task failed after 1 attempt"
    assert "retries exhausted" in str(info.value)


async def test_result_raises_job_cancelled_for_a_cancelled_job(uw: Underway) -> None:
    @uw.task
    async def task() -> None: ...

    job = await task.enqueue()
    returned = await job.cancel()
    assert returned is job
    assert job.status is JobStatus.CANCELLED
    with pytest.raises(JobCancelled, match=f"job {job.id} .* was cancelled"):
        await job.result(timeout=1)


async def test_cancelling_a_finished_job_changes_nothing(uw: Underway) -> None:
    @uw.task
    async def quick() -> int:
        return 7

    job = await quick.enqueue()
    async with running(uw):
        await job.result(timeout=5)
    await job.cancel()
    assert job.status is JobStatus.SUCCEEDED
    assert await job.result() == 7


async def test_refresh_reads_the_stored_state_again(uw: Underway) -> None:
    release = asyncio.Event()

    @uw.task
    async def gated() -> str:
        await release.wait()
        return "through"

    job = await gated.enqueue()
    snapshot = job.status
    async with running(uw):
        for _ in range(200):
            if (await job.refresh()).status is JobStatus.RUNNING:
                break
            await asyncio.sleep(0.01)
        assert job.status is JobStatus.RUNNING
        assert job.started_at is not None
        assert job.attempts == 1
        release.set()
        assert await job.result(timeout=5) == "through"
    assert snapshot is JobStatus.QUEUED


async def test_get_job_returns_a_handle_or_none(uw: Underway) -> None:
    @uw.task(queue="reports")
    async def report(month: str, *, draft: bool) -> None: ...

    job = await report.enqueue("2026-03", draft=True)
    again = await uw.get_job(job.id)
    assert isinstance(again, Job)
    assert again.id == job.id
    assert again.task_name == report.name
    assert again.queue == "reports"
    assert again.args == ("2026-03",)
    assert again.kwargs == {"draft": True}
    assert again.enqueued_at.utcoffset() == timezone.utc.utcoffset(None)
    assert again.scheduled_at >= again.enqueued_at
    assert again.error is None and again.traceback is None and again.dead_reason is None
    assert again.progress is None and again.progress_message is None
    assert repr(again) == f"<Job {job.id} {report.name!r} queued>"
    assert await uw.get_job("0" * 32) is None


async def test_result_of_a_job_purged_meanwhile_raises_instead_of_waiting_forever(
    uw: Underway,
) -> None:
    @uw.task
    async def short() -> int:
        return 1

    job = await short.enqueue()
    stale = await uw.get_job(job.id)  # a snapshot taken while it waited
    assert stale is not None
    async with running(uw):
        await job.result(timeout=5)
    assert await (await uw.backend()).purge(timedelta(0)) == 1
    with pytest.raises(UnderwayError, match=f"job {job.id} .* no longer in the store"):
        await asyncio.wait_for(stale.result(), 2)
