"""The backend contract (``underway.backends.base.Backend``), checked on every backend.

A new backend adds its URL to ``conftest.BACKENDS`` and must pass this file unchanged.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from tests.backends.conftest import START, FakeClock
from underway.backends import backend_from_url
from underway.backends.base import Backend
from underway.job import (
    JobRecord,
    JobStatus,
    Lease,
    NewJob,
    Outcome,
    Release,
    WorkerInfo,
)

LEASE = timedelta(seconds=30)
Q = ["default"]


def new(task: str = "t", **options: object) -> NewJob:
    return NewJob(task, b'{"args":[],"kwargs":{}}', **options)  # type: ignore[arg-type]


async def acquire_one(backend: Backend, worker: str = "w1", queues: list[str] = Q) -> JobRecord:
    (job,) = await backend.acquire(queues, worker, 1, LEASE)
    return job


# -- enqueue and read -------------------------------------------------------------------------


async def test_enqueue_stores_a_queued_job(backend: Backend) -> None:
    record = await backend.enqueue(
        NewJob("send", b'{"args":[1],"kwargs":{}}', queue="mail", priority=3, max_attempts=4)
    )
    assert record.status is JobStatus.QUEUED
    assert (record.task_name, record.queue, record.priority) == ("send", "mail", 3)
    assert (record.attempts, record.max_attempts, record.lease_token) == (0, 4, 0)
    assert record.enqueued_at == START
    assert record.scheduled_at == START
    assert record.started_at is None
    assert record.finished_at is None
    assert await backend.get_job(record.id) == record


async def test_get_job_unknown_id_returns_none(backend: Backend) -> None:
    assert await backend.get_job("nope") is None


async def test_enqueue_many_returns_records_in_order(backend: Backend) -> None:
    jobs = [new(f"t{i}") for i in range(50)]
    records = await backend.enqueue_many(jobs)
    assert [r.id for r in records] == [j.id for j in jobs]
    assert [r.task_name for r in records] == [f"t{i}" for i in range(50)]
    assert len(await backend.list_jobs(limit=1000)) == 50


async def test_enqueue_many_with_duplicate_id_stores_nothing(backend: Backend) -> None:
    first = await backend.enqueue(new())
    with pytest.raises(ValueError, match="unique"):
        await backend.enqueue_many([new(), NewJob("t", b"{}", id=first.id)])
    assert len(await backend.list_jobs()) == 1


# -- acquire ----------------------------------------------------------------------------------


async def test_acquire_sets_the_lease(backend: Backend, clock: FakeClock) -> None:
    queued = await backend.enqueue(new())
    job = await acquire_one(backend, "worker-a")
    assert job.id == queued.id
    assert job.status is JobStatus.RUNNING
    assert job.attempts == 1
    assert job.lease_token == 1
    assert job.lease_owner == "worker-a"
    assert job.lease_expires_at == clock.now + LEASE
    assert job.started_at == clock.now
    assert await backend.get_job(job.id) == job
    assert await backend.acquire(Q, "worker-b", 10, LEASE) == []


async def test_acquire_orders_by_priority_then_fifo(backend: Backend) -> None:
    low = await backend.enqueue_many([new(f"low{i}", priority=0) for i in range(3)])
    high = await backend.enqueue_many([new(f"high{i}", priority=5) for i in range(3)])
    urgent = await backend.enqueue(new("urgent", priority=9))
    got = await backend.acquire(Q, "w", 100, LEASE)
    assert [j.id for j in got] == [urgent.id] + [j.id for j in high] + [j.id for j in low]


async def test_acquire_fifo_within_one_priority_across_calls(backend: Backend) -> None:
    ids = [(await backend.enqueue(new(f"t{i}"))).id for i in range(20)]
    got = []
    for _ in range(4):
        got += [j.id for j in await backend.acquire(Q, "w", 5, LEASE)]
    assert got == ids


async def test_acquire_honours_limit_and_queues(backend: Backend) -> None:
    await backend.enqueue_many([new(queue="a") for _ in range(5)])
    await backend.enqueue_many([new(queue="b") for _ in range(5)])
    await backend.enqueue_many([new(queue="c") for _ in range(5)])
    first = await backend.acquire(["a", "b"], "w", 3, LEASE)
    assert len(first) == 3
    rest = await backend.acquire(["a", "b"], "w", 100, LEASE)
    assert len(rest) == 7
    assert {j.queue for j in first + rest} == {"a", "b"}


async def test_acquire_rejects_bad_arguments(backend: Backend) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await backend.acquire(Q, "w", 0, LEASE)
    with pytest.raises(ValueError, match="at least one queue"):
        await backend.acquire([], "w", 1, LEASE)


async def test_scheduled_job_is_not_acquired_early(backend: Backend, clock: FakeClock) -> None:
    later = await backend.enqueue(new(scheduled_at=START + timedelta(minutes=5)))
    assert later.status is JobStatus.SCHEDULED
    now = await backend.enqueue(new())
    assert [j.id for j in await backend.acquire(Q, "w", 10, LEASE)] == [now.id]
    clock.advance(299)
    assert await backend.acquire(Q, "w", 10, LEASE) == []
    clock.advance(1)
    reported = await backend.get_job(later.id)
    assert reported is not None
    assert reported.status is JobStatus.QUEUED  # due: reported as queued
    assert [j.id for j in await backend.acquire(Q, "w", 10, LEASE)] == [later.id]


async def test_earlier_scheduled_job_runs_before_later_enqueued_one(
    backend: Backend, clock: FakeClock
) -> None:
    plain = await backend.enqueue(new())
    early = await backend.enqueue(new(scheduled_at=START - timedelta(minutes=1)))
    got = await backend.acquire(Q, "w", 10, LEASE)
    assert [j.id for j in got] == [early.id, plain.id]


# -- leases -----------------------------------------------------------------------------------


async def test_expired_lease_is_reaped_and_acquirable_again(
    backend: Backend, clock: FakeClock
) -> None:
    queued = await backend.enqueue(new(max_attempts=3))
    await acquire_one(backend, "w1")
    clock.advance(LEASE.total_seconds())
    assert await backend.reap_expired() == []  # expires after, not at, the expiry
    clock.advance(1)
    reaped = await backend.reap_expired()
    assert [(j.id, j.status, j.attempts) for j in reaped] == [(queued.id, JobStatus.QUEUED, 1)]
    assert reaped[0].lease_owner is None
    assert await backend.reap_expired() == []
    again = await acquire_one(backend, "w2")
    assert (again.id, again.attempts, again.lease_token, again.lease_owner) == (
        queued.id,
        2,
        2,
        "w2",
    )


async def test_reaping_a_job_without_attempts_left_makes_it_dead(
    backend: Backend, clock: FakeClock
) -> None:
    await backend.enqueue(new(max_attempts=1))
    await acquire_one(backend)
    clock.advance(60)
    (reaped,) = await backend.reap_expired()
    assert reaped.status is JobStatus.DEAD
    assert reaped.dead_reason is not None
    assert "lease expired" in reaped.dead_reason
    assert reaped.finished_at == clock.now
    assert await backend.acquire(Q, "w", 1, LEASE) == []


async def test_extend_leases_keeps_the_job(backend: Backend, clock: FakeClock) -> None:
    await backend.enqueue(new())
    job = await acquire_one(backend)
    clock.advance(25)
    renewal = await backend.extend_leases("w1", [job.lease], LEASE)
    assert renewal.lost == frozenset()
    assert renewal.cancel_requested == frozenset()
    clock.advance(25)  # past the first expiry, within the extended one
    assert await backend.reap_expired() == []
    stored = await backend.get_job(job.id)
    assert stored is not None
    assert stored.lease_expires_at == START + timedelta(seconds=25) + LEASE


async def test_extend_leases_reports_lost_leases(backend: Backend, clock: FakeClock) -> None:
    await backend.enqueue(new(max_attempts=5))
    old = await acquire_one(backend, "w1")
    clock.advance(31)
    await backend.reap_expired()
    await acquire_one(backend, "w2")
    renewal = await backend.extend_leases("w1", [old.lease, Lease("missing", 1)], LEASE)
    assert renewal.lost == {old.id, "missing"}


async def test_release_is_refused_after_the_lease_was_lost(
    backend: Backend, clock: FakeClock
) -> None:
    await backend.enqueue(new(max_attempts=5))
    first = await acquire_one(backend, "w1")
    clock.advance(31)
    await backend.reap_expired()
    second = await acquire_one(backend, "w2")
    assert second.lease_token > first.lease_token
    refused = await backend.release("w1", [Release(first.lease, Outcome.success(b"1"))])
    assert refused == [False]
    stored = await backend.get_job(first.id)
    assert stored is not None
    assert (stored.status, stored.lease_owner) == (JobStatus.RUNNING, "w2")
    assert await backend.release("w2", [Release(second.lease, Outcome.success(b"2"))]) == [True]
    done = await backend.get_job(first.id)
    assert done is not None
    assert (done.status, done.result) == (JobStatus.SUCCEEDED, b"2")


async def test_release_is_refused_after_reaping_even_before_reacquire(
    backend: Backend, clock: FakeClock
) -> None:
    await backend.enqueue(new(max_attempts=5))
    job = await acquire_one(backend)
    clock.advance(31)
    await backend.reap_expired()
    assert await backend.release("w1", [Release(job.lease, Outcome.success(b"1"))]) == [False]
    assert await backend.set_progress(job.lease, 0.5, None) is False


async def test_release_applies_within_an_expired_but_unreaped_lease(
    backend: Backend, clock: FakeClock
) -> None:
    await backend.enqueue(new())
    job = await acquire_one(backend)
    clock.advance(120)
    assert await backend.release("w1", [Release(job.lease, Outcome.success(b"1"))]) == [True]


# -- release outcomes -------------------------------------------------------------------------


async def test_release_success_stores_the_result(backend: Backend, clock: FakeClock) -> None:
    await backend.enqueue(new())
    job = await acquire_one(backend)
    clock.advance(2)
    assert await backend.release("w1", [Release(job.lease, Outcome.success(b"[1,2]"))]) == [True]
    done = await backend.get_job(job.id)
    assert done is not None
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == b"[1,2]"
    assert done.finished_at == clock.now
    assert (done.lease_owner, done.lease_expires_at) == (None, None)
    assert await backend.release("w1", [Release(job.lease, Outcome.success(b"x"))]) == [False]


async def test_release_retry_waits_until_the_retry_time(backend: Backend, clock: FakeClock) -> None:
    await backend.enqueue(new(max_attempts=3))
    job = await acquire_one(backend)
    at = clock.now + timedelta(seconds=10)
    outcome = Outcome.retry(at, "ValueError: boom", "Traceback ...")
    assert await backend.release("w1", [Release(job.lease, outcome)]) == [True]
    waiting = await backend.get_job(job.id)
    assert waiting is not None
    assert (waiting.status, waiting.scheduled_at, waiting.attempts) == (
        JobStatus.SCHEDULED,
        at,
        1,
    )
    assert (waiting.error, waiting.traceback) == ("ValueError: boom", "Traceback ...")
    assert await backend.acquire(Q, "w1", 1, LEASE) == []
    clock.advance(10)
    again = await acquire_one(backend)
    assert (again.id, again.attempts) == (job.id, 2)


async def test_release_failure_with_attempts_left_is_failed(backend: Backend) -> None:
    await backend.enqueue(new(max_attempts=3))
    job = await acquire_one(backend)
    outcome = Outcome.failure("KeyError: 'x'", "Traceback ...")
    assert await backend.release("w1", [Release(job.lease, outcome)]) == [True]
    done = await backend.get_job(job.id)
    assert done is not None
    assert (done.status, done.error, done.traceback) == (
        JobStatus.FAILED,
        "KeyError: 'x'",
        "Traceback ...",
    )
    assert done.dead_reason is None


async def test_release_failure_on_the_last_attempt_is_dead(backend: Backend) -> None:
    await backend.enqueue(new(max_attempts=1))
    job = await acquire_one(backend)
    await backend.release("w1", [Release(job.lease, Outcome.failure("E: x", "tb"))])
    done = await backend.get_job(job.id)
    assert done is not None
    assert done.status is JobStatus.DEAD
    assert done.dead_reason is not None
    assert "retries exhausted" in done.dead_reason
    assert done.error == "E: x"


async def test_release_cancelled_dead_and_requeue(backend: Backend) -> None:
    await backend.enqueue_many([new("a"), new("b"), new("c")])
    a, b, c = await backend.acquire(Q, "w1", 3, LEASE)
    applied = await backend.release(
        "w1",
        [
            Release(a.lease, Outcome.cancelled()),
            Release(b.lease, Outcome.dead("unknown task 'b'")),
            Release(c.lease, Outcome.requeue()),
        ],
    )
    assert applied == [True, True, True]
    got = {j.task_name: j for j in await backend.list_jobs()}
    assert got["a"].status is JobStatus.CANCELLED
    assert (got["b"].status, got["b"].dead_reason) == (JobStatus.DEAD, "unknown task 'b'")
    assert (got["c"].status, got["c"].attempts) == (JobStatus.QUEUED, 0)
    assert [j.id for j in await backend.acquire(Q, "w1", 5, LEASE)] == [c.id]


async def test_release_many_mixes_applied_and_refused(backend: Backend) -> None:
    await backend.enqueue_many([new() for _ in range(10)])
    jobs = await backend.acquire(Q, "w1", 10, LEASE)
    releases = [Release(j.lease, Outcome.success(b"null")) for j in jobs]
    releases.insert(3, Release(Lease(jobs[0].id, 99), Outcome.success(b"0")))
    applied = await backend.release("w1", releases)
    assert applied == [True] * 3 + [False] + [True] * 7
    assert (await backend.count_jobs())["default"] == {JobStatus.SUCCEEDED: 10}


# -- release and acquire in one call ----------------------------------------------------------


async def test_release_and_acquire_releases_then_leases(backend: Backend, clock: FakeClock) -> None:
    await backend.enqueue_many([new(f"t{i}", priority=i % 2) for i in range(6)])
    first = await backend.acquire(Q, "w1", 2, LEASE)
    clock.advance(3)
    releases = [Release(j.lease, Outcome.success(b"1")) for j in first]
    releases.append(Release(Lease(first[0].id, 99), Outcome.success(b"0")))  # a stale lease
    applied, taken = await backend.release_and_acquire("w1", releases, Q, 3, LEASE)
    assert applied == [True, True, False]
    # The same jobs, in the same order, as acquire() would have given.
    assert [j.task_name for j in first + taken] == ["t1", "t3", "t5", "t0", "t2"]
    for job in taken:
        assert (job.status, job.attempts, job.lease_owner) == (JobStatus.RUNNING, 1, "w1")
        assert (job.started_at, job.lease_expires_at) == (clock.now, clock.now + LEASE)
    for job in first:
        done = await backend.get_job(job.id)
        assert done is not None
        assert (done.status, done.result, done.finished_at) == (
            JobStatus.SUCCEEDED,
            b"1",
            clock.now,
        )
    assert await backend.release("w1", [Release(first[0].lease, Outcome.success(b"2"))]) == [False]


async def test_release_and_acquire_with_nothing_to_release_acquires(backend: Backend) -> None:
    await backend.enqueue_many([new() for _ in range(3)])
    applied, taken = await backend.release_and_acquire("w1", [], Q, 2, LEASE)
    assert (applied, len(taken)) == ([], 2)
    assert len(await backend.acquire(Q, "w1", 5, LEASE)) == 1


async def test_release_and_acquire_with_limit_zero_only_releases(backend: Backend) -> None:
    await backend.enqueue_many([new() for _ in range(3)])
    job = await acquire_one(backend)
    applied, taken = await backend.release_and_acquire(
        "w1", [Release(job.lease, Outcome.failure("E: x"))], Q, 0, LEASE
    )
    assert (applied, taken) == ([True], [])
    counts = (await backend.count_jobs())["default"]
    assert counts == {JobStatus.DEAD: 1, JobStatus.QUEUED: 2}


async def test_release_and_acquire_applies_every_outcome_kind(
    backend: Backend, clock: FakeClock
) -> None:
    await backend.enqueue_many([new("a", max_attempts=3), new("b"), new("c"), new("d")])
    a, b, c, d = await backend.acquire(Q, "w1", 4, LEASE)
    later = clock.now + timedelta(seconds=5)
    releases = [
        Release(a.lease, Outcome.retry(later, "E: 1")),
        Release(b.lease, Outcome.cancelled()),
        Release(c.lease, Outcome.dead("bad record")),
        Release(d.lease, Outcome.requeue()),
    ]
    applied, _ = await backend.release_and_acquire("w1", releases, Q, 1, LEASE)
    assert applied == [True] * 4
    got = {j.task_name: j for j in await backend.list_jobs()}
    assert (got["a"].status, got["a"].scheduled_at) == (JobStatus.SCHEDULED, later)
    assert got["b"].status is JobStatus.CANCELLED
    assert (got["c"].status, got["c"].dead_reason) == (JobStatus.DEAD, "bad record")
    # The requeued job waits again, or was taken by this very call (the contract allows both).
    assert got["d"].status in (JobStatus.QUEUED, JobStatus.RUNNING)
    assert got["d"].attempts == (1 if got["d"].status is JobStatus.RUNNING else 0)


async def test_release_and_acquire_refuses_bad_arguments(backend: Backend) -> None:
    with pytest.raises(ValueError, match="negative"):
        await backend.release_and_acquire("w1", [], Q, -1, LEASE)
    with pytest.raises(ValueError, match="at least one queue"):
        await backend.release_and_acquire("w1", [], [], 1, LEASE)


# -- unique keys ------------------------------------------------------------------------------


async def test_unique_key_returns_the_active_job(backend: Backend) -> None:
    first = await backend.enqueue(new(unique_key="report:7"))
    second = await backend.enqueue(new(unique_key="report:7"))
    assert second.id == first.id
    other = await backend.enqueue(new(unique_key="report:8"))
    assert other.id != first.id
    batch = await backend.enqueue_many([new(unique_key="k"), new(unique_key="k")])
    assert batch[0].id == batch[1].id
    assert len(await backend.list_jobs()) == 3


async def test_unique_key_blocks_while_running_and_frees_when_finished(backend: Backend) -> None:
    first = await backend.enqueue(new(unique_key="k"))
    job = await acquire_one(backend)
    again = await backend.enqueue(new(unique_key="k"))
    assert again.id == first.id
    assert again.status is JobStatus.RUNNING
    await backend.release("w1", [Release(job.lease, Outcome.success(b"1"))])
    fresh = await backend.enqueue(new(unique_key="k"))
    assert fresh.id != first.id
    assert fresh.status is JobStatus.QUEUED


# -- cancel, progress, dead letters, requeue --------------------------------------------------


async def test_cancel_a_queued_job(backend: Backend, clock: FakeClock) -> None:
    queued = await backend.enqueue(new())
    cancelled = await backend.cancel(queued.id)
    assert cancelled is not None
    assert (cancelled.status, cancelled.finished_at) == (JobStatus.CANCELLED, clock.now)
    assert await backend.acquire(Q, "w", 1, LEASE) == []
    assert await backend.cancel("missing") is None


async def test_cancel_a_running_job_is_seen_on_heartbeat(backend: Backend) -> None:
    await backend.enqueue(new())
    job = await acquire_one(backend)
    flagged = await backend.cancel(job.id)
    assert flagged is not None
    assert (flagged.status, flagged.cancel_requested) == (JobStatus.RUNNING, True)
    renewal = await backend.extend_leases("w1", [job.lease], LEASE)
    assert renewal.cancel_requested == {job.id}
    assert renewal.lost == frozenset()
    await backend.release("w1", [Release(job.lease, Outcome.cancelled())])
    done = await backend.get_job(job.id)
    assert done is not None
    assert done.status is JobStatus.CANCELLED
    unchanged = await backend.cancel(job.id)
    assert unchanged is not None
    assert unchanged.status is JobStatus.CANCELLED


async def test_progress_is_stored_for_the_lease_holder(backend: Backend) -> None:
    await backend.enqueue(new())
    job = await acquire_one(backend)
    assert await backend.set_progress(job.lease, 0.4, "step 2 of 5") is True
    stored = await backend.get_job(job.id)
    assert stored is not None
    assert (stored.progress, stored.progress_message) == (0.4, "step 2 of 5")
    assert await backend.set_progress(Lease(job.id, job.lease_token + 1), 0.9, None) is False
    with pytest.raises(ValueError, match=r"between 0\.0 and 1\.0"):
        await backend.set_progress(job.lease, 1.5, None)


async def test_mark_dead_records_the_reason_and_fences_the_worker(backend: Backend) -> None:
    queued = await backend.enqueue(new("ghost"))
    dead = await backend.mark_dead(queued.id, "unknown task 'ghost'")
    assert dead is not None
    assert (dead.status, dead.dead_reason) == (JobStatus.DEAD, "unknown task 'ghost'")
    await backend.enqueue(new())
    job = await acquire_one(backend)
    await backend.mark_dead(job.id, "record cannot be decoded")
    assert await backend.release("w1", [Release(job.lease, Outcome.success(b"1"))]) == [False]
    assert await backend.mark_dead("missing", "x") is None


async def test_requeue_runs_a_dead_job_again(backend: Backend) -> None:
    await backend.enqueue(new(max_attempts=1))
    job = await acquire_one(backend)
    await backend.release("w1", [Release(job.lease, Outcome.failure("E: x", "tb"))])
    again = await backend.requeue(job.id)
    assert again is not None
    assert (again.status, again.attempts, again.error, again.dead_reason) == (
        JobStatus.QUEUED,
        0,
        None,
        None,
    )
    rerun = await acquire_one(backend)
    assert (rerun.id, rerun.attempts) == (job.id, 1)
    assert (await backend.requeue(rerun.id)) == rerun  # a running job is left alone


# -- reads for operators ----------------------------------------------------------------------


async def test_list_jobs_filters_and_pages_newest_first(backend: Backend) -> None:
    records = []
    for i in range(12):
        records.append(
            await backend.enqueue(new("even" if i % 2 == 0 else "odd", queue=f"q{i % 3}"))
        )
    newest_first = [r.id for r in reversed(records)]
    assert [j.id for j in await backend.list_jobs(limit=5)] == newest_first[:5]
    assert [j.id for j in await backend.list_jobs(limit=5, offset=5)] == newest_first[5:10]
    assert [j.id for j in await backend.list_jobs(limit=5, offset=10)] == newest_first[10:]
    evens = await backend.list_jobs(task_name="even")
    assert {j.task_name for j in evens} == {"even"}
    assert len(evens) == 6
    q0 = await backend.list_jobs(queue="q0", task_name="even")
    expected = [r.id for r in reversed(records) if r.queue == "q0" and r.task_name == "even"]
    assert [j.id for j in q0] == expected
    running = await backend.acquire(["q1"], "w", 2, LEASE)
    listed = await backend.list_jobs(status=JobStatus.RUNNING)
    assert {j.id for j in listed} == {j.id for j in running}
    assert len(await backend.list_jobs(status=JobStatus.QUEUED)) == 10
    with pytest.raises(ValueError, match="limit"):
        await backend.list_jobs(limit=0)


async def test_list_jobs_reports_due_scheduled_jobs_as_queued(
    backend: Backend, clock: FakeClock
) -> None:
    job = await backend.enqueue(new(scheduled_at=START + timedelta(seconds=5)))
    assert [j.id for j in await backend.list_jobs(status=JobStatus.SCHEDULED)] == [job.id]
    clock.advance(5)
    assert await backend.list_jobs(status=JobStatus.SCHEDULED) == []
    assert [j.id for j in await backend.list_jobs(status=JobStatus.QUEUED)] == [job.id]


async def test_count_jobs_per_queue_and_status(backend: Backend) -> None:
    await backend.enqueue_many([new(queue="a") for _ in range(4)])
    await backend.enqueue_many([new(queue="b") for _ in range(2)])
    await backend.enqueue(new(queue="b", scheduled_at=START + timedelta(hours=1)))
    jobs = await backend.acquire(["a"], "w", 3, LEASE)
    await backend.release("w", [Release(jobs[0].lease, Outcome.success(b"1"))])
    assert await backend.count_jobs() == {
        "a": {JobStatus.QUEUED: 1, JobStatus.RUNNING: 2, JobStatus.SUCCEEDED: 1},
        "b": {JobStatus.QUEUED: 2, JobStatus.SCHEDULED: 1},
    }


async def test_purge_deletes_finished_jobs_older_than_the_ttl(
    backend: Backend, clock: FakeClock
) -> None:
    await backend.enqueue_many([new() for _ in range(3)])
    a, b, c = await backend.acquire(Q, "w", 3, LEASE)
    await backend.release("w", [Release(a.lease, Outcome.success(b"1"))])
    clock.advance(3600)
    await backend.release("w", [Release(b.lease, Outcome.dead("x"))])
    waiting = await backend.enqueue(new())
    assert await backend.purge(timedelta(hours=2)) == 0
    assert await backend.purge(timedelta(minutes=30), statuses=[JobStatus.DEAD]) == 0
    assert await backend.purge(timedelta(minutes=30)) == 1
    assert await backend.get_job(a.id) is None
    clock.advance(3600)
    assert await backend.purge(timedelta(minutes=30), statuses=[JobStatus.SUCCEEDED]) == 0
    assert await backend.purge(timedelta(minutes=30), statuses=[JobStatus.DEAD]) == 1
    assert {j.id for j in await backend.list_jobs()} == {c.id, waiting.id}
    with pytest.raises(ValueError, match="not final"):
        await backend.purge(timedelta(minutes=1), statuses=[JobStatus.RUNNING])


async def test_worker_registry(backend: Backend, clock: FakeClock) -> None:
    info = WorkerInfo("host:1:a", "host", 1, ("default", "mail"), 8, START, metadata={"v": "1"})
    await backend.register_worker(info)
    await backend.register_worker(WorkerInfo("host:2:b", "host", 2, ("default",), 1, START))
    clock.advance(10)
    await backend.extend_leases("host:1:a", [], LEASE)
    workers = await backend.list_workers()
    assert [w.id for w in workers] == ["host:1:a", "host:2:b"]
    assert workers[0].queues == ("default", "mail")
    assert workers[0].metadata == {"v": "1"}
    assert (workers[0].heartbeat_at, workers[1].heartbeat_at) == (clock.now, START)
    assert await backend.prune_workers(timedelta(seconds=5)) == 1
    await backend.unregister_worker("host:1:a")
    await backend.unregister_worker("never-registered")
    assert await backend.list_workers() == []


# -- schedules --------------------------------------------------------------------------------


async def test_schedule_tick_is_claimed_once_and_only_forward(backend: Backend) -> None:
    tick = START + timedelta(minutes=1)
    assert await backend.last_schedule_tick("nightly") is None
    assert await backend.claim_schedule_tick("nightly", tick) is True
    assert await backend.claim_schedule_tick("nightly", tick) is False
    assert await backend.claim_schedule_tick("nightly", tick - timedelta(seconds=1)) is False
    assert await backend.claim_schedule_tick("other", tick) is True
    assert await backend.last_schedule_tick("nightly") == tick
    later = tick + timedelta(minutes=1)
    assert await backend.claim_schedule_tick("nightly", later) is True
    assert await backend.last_schedule_tick("nightly") == later


async def test_schedule_tick_claimed_with_its_job(backend: Backend) -> None:
    tick = START + timedelta(minutes=1)
    won = await backend.claim_schedule_tick("s", tick, new("report"))
    lost = await backend.claim_schedule_tick("s", tick, new("report"))
    assert (won, lost) == (True, False)
    assert [j.task_name for j in await backend.list_jobs()] == ["report"]


async def test_schedule_tick_exactly_once_among_concurrent_claimers(
    backend: Backend, backend_url: str, clock: FakeClock
) -> None:
    # Stores shared between objects (files, servers) get extra connections competing too.
    others: list[Backend] = []
    if not backend_url.startswith("memory"):
        others = [backend_from_url(backend_url, clock=clock) for _ in range(3)]
    for other in others:
        await other.open()
    try:
        claimers = [backend, *others]
        for minute in range(1, 6):
            tick = START + timedelta(minutes=minute)
            results = await asyncio.gather(
                *(
                    claimers[i % len(claimers)].claim_schedule_tick("s", tick, new(f"m{minute}"))
                    for i in range(20)
                )
            )
            assert sum(results) == 1
        assert len(await backend.list_jobs()) == 5
    finally:
        for other in others:
            await other.close()


# -- waiting for work -------------------------------------------------------------------------


async def test_wait_for_work_wakes_on_enqueue(backend: Backend) -> None:
    waiter = asyncio.create_task(backend.wait_for_work(Q, 10.0))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    started = time.monotonic()
    await backend.enqueue(new())
    assert await asyncio.wait_for(waiter, 5) is True
    assert time.monotonic() - started < 1.0


async def test_wait_for_work_returns_at_once_when_a_job_is_due(backend: Backend) -> None:
    await backend.enqueue(new())
    started = time.monotonic()
    assert await backend.wait_for_work(Q, 10.0) is True
    assert time.monotonic() - started < 0.5


async def test_wait_for_work_times_out_without_work(backend: Backend) -> None:
    await backend.enqueue(new(queue="elsewhere"))
    started = time.monotonic()
    assert await backend.wait_for_work(Q, 0.1) is False
    assert time.monotonic() - started >= 0.09


async def test_wait_for_jobs_gets_a_new_job_to_the_waiting_worker_once(backend: Backend) -> None:
    # Handed over already leased, or woken to acquire it: either way the worker has it,
    # once, soon after the enqueue.
    waiter = asyncio.create_task(backend.wait_for_jobs("w1", Q, 2, LEASE, 10.0))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    started = time.monotonic()
    job = await backend.enqueue(new())
    handed = await asyncio.wait_for(waiter, 5)
    assert time.monotonic() - started < 1.0
    got = handed + await backend.acquire(Q, "w1", 2, LEASE)
    assert [(r.id, r.status, r.lease_owner, r.attempts) for r in got] == [
        (job.id, JobStatus.RUNNING, "w1", 1)
    ]


async def test_wait_for_jobs_times_out_without_work(backend: Backend) -> None:
    await backend.enqueue(new(queue="elsewhere"))
    started = time.monotonic()
    assert await backend.wait_for_jobs("w1", Q, 2, LEASE, 0.1) == []
    assert time.monotonic() - started >= 0.09


# -- URLs -------------------------------------------------------------------------------------


def test_unknown_scheme_lists_the_supported_ones() -> None:
    with pytest.raises(ValueError, match=r"supported: memory://, sqlite://"):
        backend_from_url("mysql://localhost/db")


def test_memory_url_takes_no_options() -> None:
    with pytest.raises(ValueError, match="no options"):
        backend_from_url("memory://?poll_interval=1")


# -- edges ------------------------------------------------------------------------------------


async def test_cancel_a_scheduled_job(backend: Backend) -> None:
    job = await backend.enqueue(new(scheduled_at=START + timedelta(hours=1)))
    cancelled = await backend.cancel(job.id)
    assert cancelled is not None
    assert cancelled.status is JobStatus.CANCELLED


async def test_an_expired_lease_not_yet_reaped_can_be_extended(
    backend: Backend, clock: FakeClock
) -> None:
    await backend.enqueue(new())
    job = await acquire_one(backend)
    clock.advance(45)
    renewal = await backend.extend_leases("w1", [job.lease], LEASE)
    assert renewal.lost == frozenset()
    assert await backend.reap_expired() == []


async def test_requeue_is_refused_while_the_unique_key_is_taken(backend: Backend) -> None:
    first = await backend.enqueue(new(unique_key="k"))
    await backend.cancel(first.id)
    second = await backend.enqueue(new(unique_key="k"))
    assert second.id != first.id
    unchanged = await backend.requeue(first.id)
    assert unchanged is not None
    assert unchanged.status is JobStatus.CANCELLED
    await backend.cancel(second.id)
    requeued = await backend.requeue(first.id)
    assert requeued is not None
    assert requeued.status is JobStatus.QUEUED


async def test_attempts_run_out_across_retries_and_a_lost_lease(
    backend: Backend, clock: FakeClock
) -> None:
    await backend.enqueue(new(max_attempts=2))
    job = await acquire_one(backend)
    await backend.release("w1", [Release(job.lease, Outcome.retry(clock.now, "E: 1"))])
    again = await acquire_one(backend)
    assert again.attempts == 2
    clock.advance(31)
    (reaped,) = await backend.reap_expired()
    assert reaped.status is JobStatus.DEAD
    assert reaped.error == "E: 1"
    assert await backend.acquire(Q, "w1", 1, LEASE) == []
