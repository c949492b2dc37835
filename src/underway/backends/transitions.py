"""The state changes of the contract, as pure functions on :class:`JobRecord`.

Backends that can run Python inside their transaction (memory, SQL databases) apply these,
so that every backend computes the same fields the same way; backends that cannot (Redis
scripts) mirror them and are held to it by the contract suite.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from underway.backends.base import exhausted_reason
from underway.job import JobRecord, JobStatus, NewJob, Outcome, OutcomeKind

__all__ = ["acquired", "cancelled", "created", "killed", "reaped", "released", "requeued"]


def created(new: NewJob, now: datetime) -> JobRecord:
    """Return the record :meth:`Backend.enqueue_many` stores for ``new``."""
    scheduled_at = now if new.scheduled_at is None else new.scheduled_at
    status = JobStatus.SCHEDULED if scheduled_at > now else JobStatus.QUEUED
    # By position (id, task, queue, payload, status, priority, attempts, max_attempts,
    # enqueued_at, scheduled_at, started_at, finished_at, lease_owner, lease_expires_at,
    # lease_token, unique_key): a bulk enqueue makes thousands at a time.
    return JobRecord(
        new.id, new.task_name, new.queue, new.payload, status, new.priority, 0,
        new.max_attempts, now, scheduled_at, None, None, None, None, 0, new.unique_key,
    )  # fmt: skip


def acquired(job: JobRecord, worker_id: str, now: datetime, expires_at: datetime) -> JobRecord:
    """Return ``job`` as :meth:`Backend.acquire` leaves it."""
    return replace(
        job,
        status=JobStatus.RUNNING,
        attempts=job.attempts + 1,
        lease_token=job.lease_token + 1,
        lease_owner=worker_id,
        lease_expires_at=expires_at,
        started_at=now,
        progress=None,
        progress_message=None,
        cancel_requested=False,
    )


def cancelled(job: JobRecord, now: datetime) -> JobRecord:
    """Return ``job`` as :meth:`Backend.cancel` leaves it."""
    if job.status in (JobStatus.QUEUED, JobStatus.SCHEDULED):
        return replace(job, status=JobStatus.CANCELLED, finished_at=now)
    if job.status is JobStatus.RUNNING:
        return replace(job, cancel_requested=True)
    return job


def killed(job: JobRecord, reason: str, now: datetime) -> JobRecord:
    """Return ``job`` as :meth:`Backend.mark_dead` leaves it."""
    if job.is_finished:
        return job
    return replace(
        job,
        status=JobStatus.DEAD,
        dead_reason=reason,
        finished_at=now,
        lease_owner=None,
        lease_expires_at=None,
    )


def released(job: JobRecord, outcome: Outcome, now: datetime) -> JobRecord:
    """Return ``job`` as :meth:`Backend.release` leaves it after ``outcome``."""
    job = replace(job, lease_owner=None, lease_expires_at=None)
    kind = outcome.kind
    if kind is OutcomeKind.SUCCESS:
        return replace(job, status=JobStatus.SUCCEEDED, result=outcome.result, finished_at=now)
    if kind is OutcomeKind.FAILURE:
        failed = replace(job, error=outcome.error, traceback=outcome.traceback, finished_at=now)
        if job.attempts >= job.max_attempts:
            return replace(
                failed,
                status=JobStatus.DEAD,
                dead_reason=exhausted_reason(job.attempts, "the task failed"),
            )
        return replace(failed, status=JobStatus.FAILED)
    if kind is OutcomeKind.RETRY:
        assert outcome.retry_at is not None  # guaranteed by Outcome.__post_init__
        return replace(
            job,
            status=JobStatus.SCHEDULED if outcome.retry_at > now else JobStatus.QUEUED,
            scheduled_at=outcome.retry_at,
            error=outcome.error,
            traceback=outcome.traceback,
        )
    if kind is OutcomeKind.CANCELLED:
        return replace(job, status=JobStatus.CANCELLED, finished_at=now)
    if kind is OutcomeKind.DEAD:
        return replace(
            job,
            status=JobStatus.DEAD,
            dead_reason=outcome.reason,
            error=outcome.error,
            traceback=outcome.traceback,
            finished_at=now,
        )
    return replace(job, status=JobStatus.QUEUED, attempts=max(job.attempts - 1, 0))


def reaped(job: JobRecord, now: datetime) -> JobRecord:
    """Return ``job`` as :meth:`Backend.reap_expired` leaves it."""
    job = replace(job, lease_owner=None, lease_expires_at=None)
    if job.attempts >= job.max_attempts:
        reason = exhausted_reason(job.attempts, "the lease expired (the worker stopped)")
        return replace(job, status=JobStatus.DEAD, dead_reason=reason, finished_at=now)
    return replace(job, status=JobStatus.QUEUED, scheduled_at=now)


def requeued(job: JobRecord, now: datetime) -> JobRecord:
    """Return ``job`` as :meth:`Backend.requeue` leaves it."""
    return replace(
        job,
        status=JobStatus.QUEUED,
        scheduled_at=now,
        attempts=0,
        result=None,
        error=None,
        traceback=None,
        progress=None,
        progress_message=None,
        cancel_requested=False,
        dead_reason=None,
        started_at=None,
        finished_at=None,
    )
