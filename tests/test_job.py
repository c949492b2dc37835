"""The job value types."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from underway.job import (
    FINISHED_STATUSES,
    JobStatus,
    NewJob,
    Outcome,
    OutcomeKind,
    as_timedelta,
    new_job_id,
    new_job_ids,
)


def test_job_ids_are_unique_and_sort_by_creation() -> None:
    ids = [new_job_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert ids[0][:13] <= ids[-1][:13]


def test_job_ids_drawn_at_once_are_unique_and_look_the_same() -> None:
    before = new_job_id()
    batches = [new_job_ids(500) for _ in range(4)]
    ids = [i for batch in batches for i in batch]
    assert len(set(ids)) == 2000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert before[:13] <= ids[0][:13] <= ids[-1][:13]  # time-ordered, batch by batch
    assert new_job_ids(0) == []


def test_statuses() -> None:
    assert JobStatus("dead") is JobStatus.DEAD
    assert str(JobStatus.QUEUED) == "queued"
    assert {s for s in JobStatus if s.is_finished} == FINISHED_STATUSES
    assert not JobStatus.RUNNING.is_finished


def test_new_job_validates() -> None:
    with pytest.raises(ValueError, match="aware"):
        NewJob("t", b"{}", scheduled_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="max_attempts"):
        NewJob("t", b"{}", max_attempts=0)
    with pytest.raises(TypeError, match="bytes"):
        NewJob("t", "{}")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="queue"):
        NewJob("t", b"{}", queue="")
    assert NewJob("t", b"{}").id != NewJob("t", b"{}").id


def test_outcomes() -> None:
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert Outcome.retry(at, "E").retry_at == at
    assert Outcome.success(b"1").kind is OutcomeKind.SUCCESS
    assert Outcome.dead("why").reason == "why"
    with pytest.raises(ValueError, match="retry_at"):
        Outcome(OutcomeKind.RETRY)
    with pytest.raises(ValueError, match="aware"):
        Outcome.retry(datetime(2026, 1, 1))


def test_as_timedelta() -> None:
    assert as_timedelta(1.5, "lease") == timedelta(seconds=1.5)
    assert as_timedelta(timedelta(minutes=1), "lease") == timedelta(minutes=1)
    with pytest.raises(ValueError, match="positive"):
        as_timedelta(0, "lease")
    with pytest.raises(TypeError, match="seconds or a timedelta"):
        as_timedelta("5", "lease")  # type: ignore[arg-type]
