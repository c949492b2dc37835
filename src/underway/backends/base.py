"""The backend contract: what the durable queue needs from a job store.

A backend only stores and moves jobs. Retries, backoff, timeouts and results are decided by
the worker and the application; the backend applies the outcome it is told, atomically.
Each abstract method's docstring below is its specification; ``tests/backends/
test_contract.py`` checks every backend against it.

Vocabulary (after APScheduler 4):

* **acquire**: a worker takes due jobs and gets a *lease* on each: the job becomes
  ``running``, owned by the worker until ``lease_expires_at``. Each acquire increments the
  job's fencing token (:attr:`JobRecord.lease_token`).
* **extend**: the worker's heartbeat pushes its leases' expiry forward.
* **release**: the worker reports the outcome of a job. A release whose token is no longer
  the job's (the lease expired and was reaped, or another worker acquired the job since) is
  refused: a worker that lost its lease cannot record a result.
* **reap**: anyone (every worker, periodically) returns jobs whose lease expired to the
  queue, or to ``dead`` when their attempts are used up.

Delivery is at-least-once: a job acquired by a worker that then dies runs again after its
lease expires and is reaped.

Times come from the backend's clock (a callable returning an aware UTC ``datetime``,
injectable for tests), so that eligibility and expiry are judged consistently. Backends
raise :class:`~underway.errors.BackendError` (with the driver's error as ``__cause__``)
when the store fails.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from types import TracebackType

from underway.job import (
    FINISHED_STATUSES,
    JobRecord,
    JobStatus,
    Lease,
    LeaseRenewal,
    NewJob,
    Release,
    WorkerInfo,
)

__all__ = [
    "Backend",
    "Clock",
    "check_acquire",
    "check_exchange",
    "check_paging",
    "check_progress",
    "exhausted_reason",
    "purge_statuses",
    "reported_status",
    "utc_now",
]

#: A callable returning the current time as an aware UTC datetime.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Return the current time in UTC (the default clock of every backend)."""
    return datetime.now(timezone.utc)


class Backend(ABC):
    """A job store. Concrete backends are built by :func:`underway.backends.open_backend`.

    A backend object belongs to one event loop. Call :meth:`open` before anything else and
    :meth:`close` at the end, or use it as an async context manager.
    """

    clock: Clock

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, *, clock: Clock = utc_now, **options: str) -> Backend:
        """Build the backend from its URL; ``options`` are the URL's query parameters.

        Called by :func:`underway.backends.backend_from_url`, which has already checked the
        scheme. Does not connect.

        Raises:
            ValueError: The URL or an option is malformed or unknown.
        """

    async def __aenter__(self) -> Backend:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- lifetime -------------------------------------------------------------------------

    @abstractmethod
    async def open(self) -> None:
        """Connect, and create or migrate the schema if needed.

        Opening an open backend does nothing. Migrations run at most once even when several
        processes open the same store at the same time.

        Raises:
            BackendError: The store cannot be reached or its schema is newer than this
                version of underway knows.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release connections and wake every :meth:`wait_for_work` caller.

        Closing a closed backend does nothing. Nothing stored is lost.
        """

    # -- producers ------------------------------------------------------------------------

    async def enqueue(self, job: NewJob) -> JobRecord:
        """Store one job; the same as ``enqueue_many([job])[0]``."""
        (record,) = await self.enqueue_many([job])
        return record

    @abstractmethod
    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        """Store jobs, all or none, in one round trip; return their records in order.

        Each new job gets status ``scheduled`` when its ``scheduled_at`` is in the future,
        ``queued`` otherwise (``scheduled_at`` then defaults to now), ``attempts`` 0,
        ``enqueued_at`` now and ``lease_token`` 0.

        Unique keys: when a job with the same ``unique_key`` is queued, scheduled or running
        (including one earlier in the same batch), nothing is stored for the new job and the
        existing job's record is returned in its place. A finished job does not block its
        key.

        Enqueueing wakes :meth:`wait_for_work` callers in this process at once; workers in
        other processes see the job by their notification mechanism or by polling. A
        backend may instead hand a new job to a worker waiting in :meth:`wait_for_jobs`:
        the job is then stored leased to that worker (status ``running``, ``attempts`` 1,
        ``lease_token`` 1) and returned as such.

        Raises:
            ValueError: Two new jobs in ``jobs`` share an id, or a job with that id exists.
            BackendError: The store failed; no job of the batch was stored.
        """

    # -- workers --------------------------------------------------------------------------

    @abstractmethod
    async def acquire(
        self, queues: Sequence[str], worker_id: str, limit: int, lease: timedelta
    ) -> list[JobRecord]:
        """Lease up to ``limit`` due jobs to ``worker_id`` and return them.

        Eligible: jobs in one of ``queues`` whose status is ``queued`` or ``scheduled`` and
        whose ``scheduled_at`` is not after now. Order: highest ``priority`` first, then
        earliest ``scheduled_at``, then enqueue order (FIFO).

        Each acquired job changes, atomically with its selection: status ``running``,
        ``attempts`` + 1, ``lease_token`` + 1, ``lease_owner`` = ``worker_id``,
        ``lease_expires_at`` = now + ``lease``, ``started_at`` = now, progress and
        ``cancel_requested`` cleared. No job is returned to two callers, whether they share
        this backend object, a process or a machine.

        A stored row that cannot be decoded is moved to ``dead`` (reason: the decoding
        error) in the same transaction and is not returned.

        A worker may have two calls of this method or :meth:`release_and_acquire` under
        way at once (it leases ahead while its jobs are short), never more; a backend that
        answers a retried call as its first try must tell those calls apart.

        Raises:
            ValueError: ``limit`` is less than 1 or ``queues`` is empty.
        """

    @abstractmethod
    async def extend_leases(
        self, worker_id: str, leases: Sequence[Lease], duration: timedelta
    ) -> LeaseRenewal:
        """Heartbeat: push the expiry of the worker's leases to now + ``duration``.

        A lease is extended when its job is ``running`` with that ``lease_token`` (even if
        the expiry has passed but no reaper took the job yet). Every other lease is reported
        in :attr:`LeaseRenewal.lost`; jobs whose ``cancel_requested`` is set are reported in
        :attr:`LeaseRenewal.cancel_requested` (and still extended). If ``worker_id`` is
        registered, its ``heartbeat_at`` becomes now in the same call.
        """

    @abstractmethod
    async def release(self, worker_id: str, releases: Sequence[Release]) -> list[bool]:
        """Record the outcomes of finished runs; return, per release, whether it was applied.

        A release is applied only if the job is ``running`` with the lease's token;
        otherwise (the lease was lost) it changes nothing and its entry is ``False``. Each
        applied release clears the lease (owner and expiry) and, by outcome kind:

        * ``success``: status ``succeeded``, ``result`` stored, ``finished_at`` now.
        * ``failure``: ``error`` and ``traceback`` stored, ``finished_at`` now; status
          ``dead`` with ``dead_reason`` "retries exhausted ..." when ``attempts`` >=
          ``max_attempts``, ``failed`` otherwise.
        * ``retry``: error stored; ``scheduled_at`` = ``retry_at``; status ``scheduled``
          when that is in the future, ``queued`` otherwise. Attempts are not checked: the
          worker decides to retry.
        * ``cancelled``: status ``cancelled``, ``finished_at`` now.
        * ``dead``: status ``dead`` with the outcome's reason, error stored, ``finished_at``
          now.
        * ``requeue``: status ``queued``, ``attempts`` - 1 (the run did not happen),
          ``scheduled_at`` unchanged.

        The releases are applied in one round trip; each is atomic on its own.
        """

    async def release_and_acquire(
        self,
        worker_id: str,
        releases: Sequence[Release],
        queues: Sequence[str],
        limit: int,
        lease: timedelta,
    ) -> tuple[list[bool], list[JobRecord]]:
        """Record outcomes and lease more jobs: :meth:`release`, then :meth:`acquire`.

        Returns what the two calls return: per release whether it was applied, and the
        newly leased jobs (none when ``limit`` is 0). Each half follows its own method's
        specification; a job released back to the queue by this call (``retry`` due now,
        ``requeue``) may or may not be among the jobs it acquires. Backends override this
        to do both in one round trip (and one transaction where the store has them), so
        that a busy worker pays one store operation per batch of jobs, not two.

        Raises:
            ValueError: ``limit`` is negative or ``queues`` is empty.
            BackendError: The store failed. The releases may have been applied or not;
                nothing was acquired. Releasing again is safe: an applied release is
                reported as refused the second time, and changes nothing.
        """
        check_exchange(queues, limit)
        applied = await self.release(worker_id, releases)
        if limit == 0:
            return applied, []
        return applied, await self.acquire(queues, worker_id, limit, lease)

    @abstractmethod
    async def reap_expired(self) -> list[JobRecord]:
        """Recover the jobs of workers that stopped heartbeating; return them as changed.

        Eligible: ``running`` jobs whose ``lease_expires_at`` is before now. Each becomes
        ``dead`` (reason "lease expired ... attempts exhausted") when ``attempts`` >=
        ``max_attempts`` (with ``finished_at`` now), else ``queued`` with ``scheduled_at``
        now. The lease is cleared; ``lease_token`` is kept, so that the old holder's
        release is refused after the next acquire. Safe to call from every worker at once:
        each job is reaped once.
        """

    @abstractmethod
    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        """Wait until a job in ``queues`` may be due, for at most ``timeout`` seconds.

        Returns ``True`` early when a job may be acquirable: one is enqueued through this
        backend object, a scheduled one comes due, or the backend's notification or poll
        sees one. Returns ``False`` at the timeout or when the backend closes. A ``True``
        is a hint, not a promise: the caller acquires and may get nothing.
        """

    async def wait_for_jobs(
        self,
        worker_id: str,
        queues: Sequence[str],
        free: int,
        lease: timedelta,
        timeout: float,
    ) -> list[JobRecord]:
        """Wait as an idle worker: :meth:`wait_for_work`, and maybe be handed jobs.

        A backend may hand new jobs straight to a worker waiting here, leased to it as
        :meth:`acquire` would lease them (at most ``free``, for ``lease``), in the same atomic
        step as their enqueue: a job then reaches an idle worker without a further round
        trip. The call returns those it has received (often none: they may also come with
        the worker's next :meth:`acquire`, which returns every job handed to the worker
        that it has not received yet, before the ones it chooses). It returns when it is
        handed a job or is woken as :meth:`wait_for_work` would be, and after at most
        ``timeout`` seconds; the caller then acquires.

        Cancelled, it stops handing jobs to the worker and puts back in their queue, as
        ``requeue`` releases, the jobs handed to it that it did not return.

        The default waits with :meth:`wait_for_work` and returns no job.
        """
        await self.wait_for_work(queues, timeout)
        return []

    @abstractmethod
    async def set_progress(self, lease: Lease, progress: float, message: str | None) -> bool:
        """Store a running job's progress (0.0 to 1.0) and message.

        Applied only if the job is ``running`` with the lease's token; returns whether it
        was.

        Raises:
            ValueError: ``progress`` is outside 0.0 to 1.0.
        """

    @abstractmethod
    async def register_worker(self, info: WorkerInfo) -> None:
        """Add the worker to the registry, or replace its entry; ``heartbeat_at`` = now."""

    @abstractmethod
    async def unregister_worker(self, worker_id: str) -> None:
        """Remove the worker from the registry (a clean shutdown); unknown ids are ignored."""

    # -- schedules ------------------------------------------------------------------------

    @abstractmethod
    async def claim_schedule_tick(
        self, schedule: str, tick: datetime, job: NewJob | None = None
    ) -> bool:
        """Claim one tick of a durable schedule; return whether this caller won it.

        The claim succeeds when ``tick`` is later than every tick claimed before for
        ``schedule`` (the first claim always succeeds); the tick then becomes the
        schedule's last tick. Of many callers claiming the same tick, on any number of
        processes and machines, exactly one wins. When ``job`` is given it is enqueued (as
        :meth:`enqueue_many` would) in the same transaction as a won claim, so that a tick
        is never claimed without its job.
        """

    @abstractmethod
    async def last_schedule_tick(self, schedule: str) -> datetime | None:
        """Return the last tick claimed for ``schedule``, or ``None`` if none was."""

    # -- operators (CLI, dashboard) -------------------------------------------------------

    @abstractmethod
    async def get_job(self, job_id: str) -> JobRecord | None:
        """Return the job with this id, or ``None`` if there is none.

        Raises:
            CorruptRecordError: The stored record cannot be decoded.
        """

    @abstractmethod
    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        status: JobStatus | None = None,
        task_name: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        """Return jobs matching every filter given, newest first (by enqueue order).

        ``status`` filters on the reported status (a due ``scheduled`` job is reported and
        filtered as ``queued``). Records that cannot be decoded are skipped and logged, not
        raised: listing always works.

        Raises:
            ValueError: ``limit`` is less than 1 or ``offset`` negative.
        """

    @abstractmethod
    async def count_jobs(self) -> dict[str, dict[JobStatus, int]]:
        """Return the number of jobs per queue and reported status; zero counts omitted."""

    @abstractmethod
    async def list_workers(self) -> list[WorkerInfo]:
        """Return the registered workers with their last heartbeat, by id."""

    @abstractmethod
    async def prune_workers(self, older_than: timedelta) -> int:
        """Remove workers whose last heartbeat is older than ``older_than``; return how many."""

    @abstractmethod
    async def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a job; return its record as changed, or ``None`` if there is no such job.

        A ``queued`` or ``scheduled`` job becomes ``cancelled`` at once (``finished_at``
        now). A ``running`` job gets ``cancel_requested`` set; its worker learns it from
        :meth:`extend_leases` and releases the job with a ``cancelled`` outcome. A finished
        job is returned unchanged.
        """

    @abstractmethod
    async def mark_dead(self, job_id: str, reason: str) -> JobRecord | None:
        """Move a job that is not finished to ``dead`` with ``reason``, without a lease.

        For jobs that cannot run at all (an unknown task name found by an operator, a record
        a worker cannot decode). The lease is cleared, so a worker holding one is refused
        on release. A finished job is returned unchanged; ``None`` if there is no such job.
        """

    @abstractmethod
    async def requeue(self, job_id: str) -> JobRecord | None:
        """Run a finished job again (an operator's retry); return it as changed.

        A ``failed``, ``dead`` or ``cancelled`` job becomes ``queued`` with ``scheduled_at``
        now, ``attempts`` 0, and its result, error, traceback, progress, dead reason and
        ``finished_at`` cleared. Other jobs are returned unchanged; ``None`` if there is
        none. If its unique key is taken by an active job, the job is returned unchanged.
        """

    @abstractmethod
    async def purge(
        self, older_than: timedelta, statuses: Sequence[JobStatus] | None = None
    ) -> int:
        """Delete finished jobs whose ``finished_at`` is before now - ``older_than``.

        ``statuses`` restricts the purge to some final statuses (default: all four).
        Returns how many jobs were deleted.

        Raises:
            ValueError: ``statuses`` names a status that is not final.
        """


# -- helpers shared by the backends -----------------------------------------------------------


def reported_status(status: JobStatus, scheduled_at: datetime, now: datetime) -> JobStatus:
    """Return the status to report: a ``scheduled`` job whose time has come is ``queued``."""
    if status is JobStatus.SCHEDULED and scheduled_at <= now:
        return JobStatus.QUEUED
    return status


def check_acquire(queues: Sequence[str], limit: int) -> None:
    """Raise ``ValueError`` for the arguments :meth:`Backend.acquire` refuses."""
    if isinstance(queues, str):
        raise TypeError(f"queues must be a sequence of queue names, e.g. [{queues!r}].")
    if not queues:
        raise ValueError("queues must name at least one queue, e.g. ['default'].")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}.")


def check_exchange(queues: Sequence[str], limit: int) -> None:
    """Raise ``ValueError`` for the arguments :meth:`Backend.release_and_acquire` refuses."""
    if limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}.")
    check_acquire(queues, max(limit, 1))


def check_progress(progress: float) -> None:
    """Raise ``ValueError`` unless ``progress`` is between 0.0 and 1.0."""
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must be between 0.0 and 1.0, got {progress!r}.")


def check_paging(limit: int, offset: int) -> None:
    """Raise ``ValueError`` for a page :meth:`Backend.list_jobs` refuses."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}.")
    if offset < 0:
        raise ValueError(f"offset must not be negative, got {offset}.")


def purge_statuses(statuses: Sequence[JobStatus] | None) -> frozenset[JobStatus]:
    """Return the statuses :meth:`Backend.purge` deletes, refusing ones that are not final."""
    if statuses is None:
        return FINISHED_STATUSES
    chosen = frozenset(JobStatus(s) for s in statuses)
    unfinished = chosen - FINISHED_STATUSES
    if unfinished:
        names = ", ".join(sorted(s.value for s in unfinished))
        raise ValueError(
            f"purge deletes finished jobs only; {names} is not final. Cancel the jobs first."
        )
    return chosen


def exhausted_reason(attempts: int, what: str) -> str:
    """The dead reason for a job that used all of its attempts."""
    return f"retries exhausted: {what} after {attempts} attempt{'s' if attempts != 1 else ''}"
