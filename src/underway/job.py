"""The values the durable queue stores and passes between its parts.

These are data, not handles: :class:`JobRecord` is one stored run of a task as a backend
returns it, :class:`NewJob` what a producer hands to :meth:`Backend.enqueue_many
<underway.backends.base.Backend.enqueue_many>`, :class:`Outcome` what a worker reports when
it releases a job. Arguments and results travel as already-serialized bytes (see
:mod:`underway.serializers`); backends never decode them.

Every ``*_at`` field is an aware datetime in UTC.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum

__all__ = [
    "ACTIVE_STATUSES",
    "FINISHED_STATUSES",
    "JobRecord",
    "JobStatus",
    "Lease",
    "LeaseRenewal",
    "NewJob",
    "Outcome",
    "OutcomeKind",
    "Release",
    "WorkerInfo",
    "new_job_id",
]

UTC = timezone.utc


class JobStatus(str, Enum):
    """Where a job is in its life.

    ``queued`` and ``scheduled`` jobs wait (a ``scheduled`` one until its ``scheduled_at``;
    backends report a scheduled job whose time has come as ``queued``); a ``running`` job is
    leased by a worker; the other four are final.
    """

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD = "dead"

    @property
    def is_finished(self) -> bool:
        """Whether the status is final (succeeded, failed, cancelled or dead)."""
        return self in FINISHED_STATUSES

    def __str__(self) -> str:
        return self.value


#: Statuses in which a job still counts against its unique key.
ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RUNNING})
#: Statuses that never change again (unless an operator requeues the job).
FINISHED_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.DEAD}
)


def new_job_id() -> str:
    """Return a new job id: 32 lowercase hex digits that sort by creation time.

    The first 13 digits are microseconds since the Unix epoch, the other 19 are random
    (76 bits), so ids are unique without coordination and roughly time-ordered. Backends do
    not rely on ids for FIFO order; they keep their own enqueue sequence.
    """
    return f"{time.time_ns() // 1000:013x}{secrets.token_hex(10)[:19]}"


def new_job_ids(count: int) -> list[str]:
    """Return ``count`` new job ids, as :func:`new_job_id` makes them, drawn at once.

    They share their time digits (made in the same microsecond, as far as order goes),
    and their random digits come from one read of the system's random source.
    """
    stamp = f"{time.time_ns() // 1000:013x}"
    random = secrets.token_hex(10 * count)
    return [stamp + random[20 * i : 20 * i + 19] for i in range(count)]


def _check_aware(name: str, value: datetime | None) -> None:
    if value is not None and value.tzinfo is None:
        raise ValueError(
            f"{name} must be an aware datetime; pass e.g. datetime.now(timezone.utc) "
            "or attach a ZoneInfo."
        )


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job a producer asks a backend to store.

    Attributes:
        task_name: The registered name of the task to run.
        payload: The serialized arguments (see :mod:`underway.serializers`).
        queue: The queue the job waits in.
        priority: Higher runs first among jobs that are due; ties run in enqueue order.
        max_attempts: How many times the job may be acquired (1 means no retry).
        scheduled_at: Not before this time; ``None`` means at once.
        unique_key: While a job with this key is queued, scheduled or running, enqueueing
            another with the same key returns the existing job instead.
        id: The job's id; generated unless given.
    """

    task_name: str
    payload: bytes
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 1
    scheduled_at: datetime | None = None
    unique_key: str | None = None
    id: str = field(default_factory=new_job_id)

    def __post_init__(self) -> None:
        if not self.task_name:
            raise ValueError("task_name must be a non-empty string.")
        if not self.queue:
            raise ValueError("queue must be a non-empty string; the default is 'default'.")
        if not isinstance(self.payload, bytes):
            raise TypeError(
                "payload must be bytes; serialize the arguments with "
                "underway.serializers.JsonSerializer.dumps_call first."
            )
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (1 means the job is not retried).")
        _check_aware("scheduled_at", self.scheduled_at)


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's claim on one running job: the job's id and its fencing token.

    Every acquire of a job increments its token, so a worker whose lease was lost (reaped
    and acquired by another) presents an old token and is refused.
    """

    job_id: str
    token: int


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One stored job, as a backend returns it.

    Attributes:
        id: The job's id.
        task_name: The registered name of the task.
        queue: The queue the job waits in.
        payload: The serialized arguments.
        status: Where the job is in its life.
        priority: Higher runs first.
        attempts: How many times the job has been acquired.
        max_attempts: How many times it may be.
        enqueued_at: When it was stored.
        scheduled_at: When it becomes (or became) eligible to run.
        started_at: When it was last acquired.
        finished_at: When it reached a final status.
        lease_owner: The id of the worker holding it while running.
        lease_expires_at: When that worker's lease runs out unless extended.
        lease_token: The fencing token of the current (or last) lease.
        unique_key: The job's unique key, if any.
        result: The serialized return value of a succeeded job.
        error: The last error (``"ExceptionType: message"``) of a failed or retried run.
        traceback: The traceback of that error.
        progress: The last progress a running task reported, from 0.0 to 1.0.
        progress_message: The message that came with it.
        cancel_requested: A cancel was asked for while the job was running.
        dead_reason: Why the job is dead (retries exhausted, unknown task, bad record).
    """

    id: str
    task_name: str
    queue: str
    payload: bytes
    status: JobStatus
    priority: int
    attempts: int
    max_attempts: int
    enqueued_at: datetime
    scheduled_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    lease_token: int = 0
    unique_key: str | None = None
    result: bytes | None = None
    error: str | None = None
    traceback: str | None = None
    progress: float | None = None
    progress_message: str | None = None
    cancel_requested: bool = False
    dead_reason: str | None = None

    @property
    def lease(self) -> Lease:
        """The lease a worker presents to extend or release this job."""
        return Lease(self.id, self.lease_token)

    @property
    def is_finished(self) -> bool:
        """Whether the job's status is final."""
        return self.status.is_finished


class OutcomeKind(str, Enum):
    """What happened to a job a worker releases; see :class:`Outcome`."""

    SUCCESS = "success"
    FAILURE = "failure"
    RETRY = "retry"
    CANCELLED = "cancelled"
    DEAD = "dead"
    REQUEUE = "requeue"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended, as a worker reports it to :meth:`Backend.release`.

    Build one with the class methods rather than the constructor.
    """

    kind: OutcomeKind
    result: bytes | None = None
    error: str | None = None
    traceback: str | None = None
    retry_at: datetime | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        _check_aware("retry_at", self.retry_at)
        if self.kind is OutcomeKind.RETRY and self.retry_at is None:
            raise ValueError("a retry outcome needs retry_at; use Outcome.retry(at, ...).")

    @classmethod
    def success(cls, result: bytes) -> Outcome:
        """The task returned; ``result`` is its serialized return value.

        The job becomes ``succeeded``.
        """
        return cls(OutcomeKind.SUCCESS, result=result)

    @classmethod
    def failure(cls, error: str, traceback: str | None = None) -> Outcome:
        """The task raised and will not be retried.

        The job becomes ``dead`` (reason: retries exhausted) when it has used all of its
        attempts, and ``failed`` otherwise (the task chose not to retry).
        """
        return cls(OutcomeKind.FAILURE, error=error, traceback=traceback)

    @classmethod
    def retry(cls, at: datetime, error: str | None = None, traceback: str | None = None) -> Outcome:
        """The task raised and runs again at ``at`` (the worker computed the backoff).

        The job waits again (``scheduled`` until ``at``); its error is kept for display.
        """
        return cls(OutcomeKind.RETRY, error=error, traceback=traceback, retry_at=at)

    @classmethod
    def cancelled(cls, reason: str | None = None) -> Outcome:
        """The run stopped because a cancel was requested; the job becomes ``cancelled``."""
        return cls(OutcomeKind.CANCELLED, reason=reason)

    @classmethod
    def dead(cls, reason: str, error: str | None = None, traceback: str | None = None) -> Outcome:
        """The job cannot run (unknown task name, undecodable payload); it becomes ``dead``."""
        return cls(OutcomeKind.DEAD, reason=reason, error=error, traceback=traceback)

    @classmethod
    def requeue(cls) -> Outcome:
        """Hand the job back unrun (a shutting-down worker); its attempt is not counted."""
        return cls(OutcomeKind.REQUEUE)


@dataclass(frozen=True, slots=True)
class Release:
    """One job a worker releases: the lease it holds and how the run ended."""

    lease: Lease
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class LeaseRenewal:
    """What :meth:`Backend.extend_leases` found.

    Attributes:
        lost: Ids of jobs whose lease the worker no longer holds; it must stop them and
            must not report their outcome.
        cancel_requested: Ids of jobs still leased to the worker that were asked to cancel.
    """

    lost: frozenset[str] = frozenset()
    cancel_requested: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker process as the registry shows it.

    Attributes:
        id: Unique per worker process (e.g. ``hostname:pid:random``).
        hostname: The machine it runs on.
        pid: Its process id.
        queues: The queues it takes jobs from.
        concurrency: How many jobs it runs at once.
        started_at: When it started.
        heartbeat_at: When the backend last heard from it (set by the backend).
        metadata: Free-form strings (version, command line) for display.
    """

    id: str
    hostname: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


def as_timedelta(value: float | timedelta, name: str) -> timedelta:
    """Normalise a duration given as seconds or a ``timedelta``; it must be positive."""
    if isinstance(value, timedelta):
        delta = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        delta = timedelta(seconds=value)
    else:
        raise TypeError(f"{name} must be a number of seconds or a timedelta, not {value!r}.")
    if delta <= timedelta(0):
        raise ValueError(f"{name} must be positive, got {value!r}.")
    return delta
