"""Tasks: registration, typed enqueue, per-call options, unique jobs, enqueue_many."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.queue_apps.harness import KINDS, backend_url
from underway import Job, JobStatus, Task, Underway
from underway.errors import PayloadTooLargeError, SerializationError
from underway.task import MAX_RETRY_DELAY

UTC = timezone.utc


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request.param, tmp_path)


@pytest.fixture
async def uw(url: str) -> AsyncIterator[Underway]:
    app = Underway(url)
    yield app
    await app.close()


async def test_enqueue_returns_a_queued_job_with_its_arguments(uw: Underway) -> None:
    @uw.task
    async def greet(name: str, punctuation: str = "!") -> str:
        return f"hello {name}{punctuation}"

    job = await greet.enqueue("ada", punctuation="?")
    assert isinstance(job, Job)
    assert len(job.id) == 32
    assert job.status is JobStatus.QUEUED
    assert job.task_name == greet.name == f"{__name__}.{greet.__qualname__}"
    assert job.queue == "default"
    assert job.args == ("ada",)
    assert job.kwargs == {"punctuation": "?"}
    assert job.attempts == 0
    assert job.enqueued_at.tzinfo is not None
    assert job.started_at is None and job.finished_at is None
    stored = await uw.get_job(job.id)
    assert stored is not None
    assert (stored.id, stored.status, stored.args) == (job.id, JobStatus.QUEUED, ("ada",))


async def test_enqueue_is_type_checked_against_the_signature(uw: Underway) -> None:
    @uw.task
    async def add(a: int, b: int) -> int:
        return a + b

    # mypy (strict, with warn_unused_ignores) fails `make test` if this ignore is unused:
    # it proves that a wrong argument type is caught statically.
    job = await add.enqueue("one", 2)  # type: ignore[arg-type]
    assert job.args == ("one", 2)
    typed: Job[int] = await add.enqueue(1, 2)
    assert typed.args == (1, 2)


async def test_calling_the_task_directly_still_calls_the_function(uw: Underway) -> None:
    calls: list[int] = []

    @uw.task
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    @uw.task
    async def triple(x: int) -> int:
        return 3 * x

    assert double(4) == 8
    assert calls == [4]
    assert await triple(5) == 15
    assert await uw.backend_record("nothing") is None
    assert (await (await uw.backend()).list_jobs()) == []  # a direct call stores nothing


async def test_task_options_and_defaults(uw: Underway) -> None:
    @uw.task(name="mail.send", queue="mail", retries=5, retry_backoff=2, timeout=30, priority=7)
    def send(to: str) -> None:
        """Send an email."""

    assert isinstance(send, Task)
    assert uw.tasks["mail.send"] is send
    assert (send.queue, send.retries, send.priority) == ("mail", 5, 7)
    assert send.retry_backoff == timedelta(seconds=2)
    assert send.timeout == timedelta(seconds=30)
    assert send.executor == "thread"
    assert send.__doc__ == "Send an email."
    assert send.__name__ == "send"
    job = await send.enqueue("a@example.com")
    assert (job.queue, job.record.priority, job.record.max_attempts) == ("mail", 7, 6)


def test_invalid_task_options_are_refused() -> None:
    uw = Underway("memory://")

    def plain() -> None: ...

    async def coro() -> None: ...

    with pytest.raises(ValueError, match="retries must be"):
        uw.task(retries=-1)(plain)
    with pytest.raises(TypeError, match="priority must be an int"):
        uw.task(priority="high")(plain)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="queue must be"):
        uw.task(queue="")(plain)
    with pytest.raises(ValueError, match="process=True is for CPU-bound plain functions"):
        uw.task(process=True)(coro)
    with pytest.raises(ValueError, match="timeout must be positive"):
        uw.task(timeout=0)(plain)
    assert uw.tasks == {}


def test_two_functions_under_one_name_are_refused() -> None:
    uw = Underway("memory://")

    @uw.task(name="job")
    def first() -> None: ...

    def second() -> None: ...

    with pytest.raises(ValueError, match="already registered"):
        uw.task(name="job")(second)
    assert uw.tasks["job"].fn is first.fn
    uw.task(name="job")(first.fn)  # the same function again is fine


async def test_delay_schedules_the_job_for_later(uw: Underway) -> None:
    @uw.task
    async def later() -> None: ...

    before = datetime.now(UTC)
    job = await later.options(delay=60).enqueue()
    assert job.status is JobStatus.SCHEDULED
    assert before + timedelta(seconds=59) < job.scheduled_at < before + timedelta(seconds=62)
    at = datetime.now(UTC) + timedelta(hours=1)
    job = await later.options(at=at).enqueue()
    assert job.status is JobStatus.SCHEDULED
    assert abs(job.scheduled_at - at) < timedelta(milliseconds=1)
    now = await later.options(delay=0).enqueue()
    assert now.status is JobStatus.QUEUED


def test_invalid_call_options_are_refused() -> None:
    uw = Underway("memory://")

    @uw.task
    async def later() -> None: ...

    with pytest.raises(TypeError, match="not both"):
        later.options(delay=1, at=datetime.now(UTC))
    with pytest.raises(ValueError, match="aware datetime"):
        later.options(at=datetime.now())
    with pytest.raises(ValueError, match="must not be negative"):
        later.options(delay=-1)


async def test_per_call_priority_queue_and_unique_key(uw: Underway) -> None:
    @uw.task(priority=1)
    async def work(n: int) -> None: ...

    job = await work.options(priority=9, queue="urgent").enqueue(1)
    assert (job.record.priority, job.queue) == (9, "urgent")
    first = await work.options(unique_key="only-one").enqueue(1)
    second = await work.options(unique_key="only-one").enqueue(2)
    assert second.id == first.id
    assert second.args == (1,)


async def test_unique_tasks_return_the_waiting_job_for_the_same_arguments(uw: Underway) -> None:
    @uw.task(unique=True)
    async def refresh(account: int) -> None: ...

    first = await refresh.enqueue(7)
    again = await refresh.enqueue(7)
    other = await refresh.enqueue(8)
    assert again.id == first.id
    assert other.id != first.id
    assert first.record.unique_key is not None
    assert len(await (await uw.backend()).list_jobs()) == 2
    await first.cancel()  # a finished job no longer holds its key
    fresh = await refresh.enqueue(7)
    assert fresh.id != first.id
    assert fresh.status is JobStatus.QUEUED


async def test_enqueue_many_stores_every_call(uw: Underway) -> None:
    @uw.task(unique=True)
    async def index(doc: int, *, full: bool = False) -> None: ...

    jobs = await index.enqueue_many(
        [((i,), {"full": i % 2 == 0}) for i in range(20)] + [((3,), {"full": False})]
    )
    assert len(jobs) == 21
    assert [j.args for j in jobs[:3]] == [(0,), (1,), (2,)]
    assert jobs[0].kwargs == {"full": True}
    assert jobs[20].id == jobs[3].id  # unique within one batch too
    assert len(await (await uw.backend()).list_jobs(limit=100)) == 20


async def test_a_non_json_argument_is_refused_by_name_and_nothing_is_stored(
    uw: Underway,
) -> None:
    @uw.task
    async def remind(user_id: int, when: datetime, tags: list[str]) -> None: ...

    with pytest.raises(SerializationError, match="argument 'when'") as info:
        await remind.enqueue(1, datetime.now(UTC), ["a"])
    assert "isoformat()" in str(info.value)
    with pytest.raises(SerializationError, match=r"argument 'tags'.*set"):
        await remind.enqueue(1, when="tomorrow", tags={"a"})  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)
    assert await (await uw.backend()).list_jobs() == []


async def test_a_payload_over_the_limit_is_refused(url: str) -> None:
    app = Underway(url, max_payload_bytes=1000)
    try:

        @app.task
        async def upload(data: str) -> None: ...

        ok = await upload.enqueue("x" * 900)
        assert ok.status is JobStatus.QUEUED
        with pytest.raises(PayloadTooLargeError, match="over the limit of 1,000 bytes") as info:
            await upload.enqueue("x" * 2000)
        assert "upload" in str(info.value)
        assert isinstance(info.value, ValueError)
        assert len(await (await app.backend()).list_jobs()) == 1
    finally:
        await app.close()


def test_retry_delay_grows_exponentially_with_jitter_and_a_cap() -> None:
    uw = Underway("memory://")

    @uw.task(retry_backoff=1.0)
    async def flaky() -> None: ...

    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0)]:
        delays = [flaky.retry_delay(attempt).total_seconds() for _ in range(50)]
        assert all(base * 0.5 <= d <= base for d in delays), (attempt, delays)
        assert len(set(delays)) > 1  # jittered
    assert flaky.retry_delay(40) <= MAX_RETRY_DELAY


async def test_unique_jobs_match_the_same_call_however_it_is_spelled(uw: Underway) -> None:
    @uw.task(unique=True)
    async def export(account: int, fmt: str = "csv", *, full: bool = False) -> None: ...

    first = await export.enqueue(7, "csv", full=True)
    same = [
        await export.enqueue(account=7, full=True),
        await export.enqueue(full=True, account=7, fmt="csv"),
        await export.enqueue(7, full=True),
    ]
    assert {job.id for job in same} == {first.id}
    other = await export.enqueue(7, "json", full=True)
    assert other.id != first.id


def test_process_tasks_must_be_importable_by_name() -> None:
    uw = Underway("memory://")

    def nested(n: int) -> int:
        return n

    with pytest.raises(ValueError, match="module-level function") as info:
        uw.task(process=True)(nested)
    assert "nested" in str(info.value)
    assert uw.tasks == {}
    uw.task(process=False)(nested)  # in a thread, any function will do


async def test_enqueue_in_a_transaction_needs_postgresql(uw: Underway) -> None:
    @uw.task
    async def receipt(order_id: int) -> None:
        pass

    with pytest.raises(TypeError, match="only the PostgreSQL backend supports"):
        await receipt.enqueue_in(object(), 1)
    assert await (await uw.backend()).count_jobs() == {}
