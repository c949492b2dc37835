"""The in-memory backend (``memory://``): for tests and single-process experiments.

Jobs live in this process and die with it. Every method runs without awaiting in between
its reads and writes, so each is atomic on the event loop. It follows the contract of
:class:`~underway.backends.base.Backend` exactly, so tests written against it hold for the
durable backends too.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from underway.backends.base import (
    Backend,
    Clock,
    check_acquire,
    check_paging,
    check_progress,
    purge_statuses,
    reported_status,
    utc_now,
)
from underway.backends.transitions import (
    acquired,
    cancelled,
    created,
    killed,
    reaped,
    released,
    requeued,
)
from underway.job import (
    ACTIVE_STATUSES,
    JobRecord,
    JobStatus,
    Lease,
    LeaseRenewal,
    NewJob,
    OutcomeKind,
    Release,
    WorkerInfo,
)

__all__ = ["MemoryBackend"]

_WAITING = (JobStatus.QUEUED, JobStatus.SCHEDULED)


class MemoryBackend(Backend):
    """Jobs in a dict, for one process and one event loop."""

    def __init__(self, *, clock: Clock = utc_now) -> None:
        """Create an empty store.

        Args:
            clock: Returns the current time as an aware UTC datetime.
        """
        self.clock = clock
        self._jobs: dict[str, JobRecord] = {}
        self._seq: dict[str, int] = {}
        self._counter = itertools.count()
        self._unique: dict[str, str] = {}
        self._workers: dict[str, WorkerInfo] = {}
        self._ticks: dict[str, datetime] = {}
        self._waiters: set[asyncio.Future[bool]] = set()

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = utc_now, **options: str) -> MemoryBackend:
        """Build from ``memory://``, which takes no options."""
        if options:
            raise ValueError(f"memory:// takes no options, got {sorted(options)}.")
        return cls(clock=clock)

    async def open(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Wake the waiters; the jobs stay until the object is dropped."""
        self._wake(False)

    def _wake(self, value: bool = True) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(value)
        self._waiters.clear()

    def _report(self, job: JobRecord, now: datetime) -> JobRecord:
        status = reported_status(job.status, job.scheduled_at, now)
        return job if status is job.status else replace(job, status=status)

    def _active_unique(self, key: str | None) -> JobRecord | None:
        if key is None:
            return None
        job_id = self._unique.get(key)
        job = self._jobs.get(job_id) if job_id is not None else None
        return job if job is not None and job.status in ACTIVE_STATUSES else None

    def _store(self, job: JobRecord) -> JobRecord:
        self._jobs[job.id] = job
        if job.unique_key is not None and job.status in ACTIVE_STATUSES:
            self._unique[job.unique_key] = job.id
        return job

    def _insert(self, new: NewJob, now: datetime) -> JobRecord:
        existing = self._active_unique(new.unique_key)
        if existing is not None:
            return self._report(existing, now)
        record = created(new, now)
        self._seq[record.id] = next(self._counter)
        return self._store(record)

    def _check_ids(self, jobs: Sequence[NewJob]) -> None:
        ids = [job.id for job in jobs]
        if len(set(ids)) != len(ids) or any(i in self._jobs for i in ids):
            raise ValueError("job ids must be unique; leave NewJob.id to its default.")

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        """See :meth:`Backend.enqueue_many`."""
        self._check_ids(jobs)
        now = self.clock()
        records = [self._insert(job, now) for job in jobs]
        if records:
            self._wake()
        return records

    async def acquire(
        self, queues: Sequence[str], worker_id: str, limit: int, lease: timedelta
    ) -> list[JobRecord]:
        """See :meth:`Backend.acquire`."""
        check_acquire(queues, limit)
        now = self.clock()
        wanted = set(queues)
        due = [
            job
            for job in self._jobs.values()
            if job.status in _WAITING and job.queue in wanted and job.scheduled_at <= now
        ]
        due.sort(key=lambda j: (-j.priority, j.scheduled_at, self._seq[j.id]))
        expires_at = now + lease
        return [self._store(acquired(job, worker_id, now, expires_at)) for job in due[:limit]]

    def _held(self, lease: Lease) -> JobRecord | None:
        job = self._jobs.get(lease.job_id)
        if job is None or job.status is not JobStatus.RUNNING or job.lease_token != lease.token:
            return None
        return job

    async def extend_leases(
        self, worker_id: str, leases: Sequence[Lease], duration: timedelta
    ) -> LeaseRenewal:
        """See :meth:`Backend.extend_leases`."""
        now = self.clock()
        lost, cancel = set(), set()
        for lease in leases:
            job = self._held(lease)
            if job is None:
                lost.add(lease.job_id)
                continue
            self._store(replace(job, lease_expires_at=now + duration))
            if job.cancel_requested:
                cancel.add(job.id)
        worker = self._workers.get(worker_id)
        if worker is not None:
            self._workers[worker_id] = replace(worker, heartbeat_at=now)
        return LeaseRenewal(lost=frozenset(lost), cancel_requested=frozenset(cancel))

    async def release(self, worker_id: str, releases: Sequence[Release]) -> list[bool]:
        """See :meth:`Backend.release`."""
        now = self.clock()
        applied = []
        for item in releases:
            job = self._held(item.lease)
            if job is None:
                applied.append(False)
                continue
            self._store(released(job, item.outcome, now))
            applied.append(True)
            if item.outcome.kind in (OutcomeKind.RETRY, OutcomeKind.REQUEUE):
                self._wake()
        return applied

    async def reap_expired(self) -> list[JobRecord]:
        """See :meth:`Backend.reap_expired`."""
        now = self.clock()
        expired = [
            job
            for job in self._jobs.values()
            if job.status is JobStatus.RUNNING
            and job.lease_expires_at is not None
            and job.lease_expires_at < now
        ]
        records = [self._store(reaped(job, now)) for job in expired]
        if records:
            self._wake()
        return records

    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        """See :meth:`Backend.wait_for_work`."""
        now = self.clock()
        wanted = set(queues)
        waiting = [j for j in self._jobs.values() if j.status in _WAITING and j.queue in wanted]
        if any(j.scheduled_at <= now for j in waiting):
            return True
        if waiting:
            next_due = min(j.scheduled_at for j in waiting)
            timeout = min(timeout, (next_due - now).total_seconds())
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            return await asyncio.wait_for(waiter, max(timeout, 0.0))
        except asyncio.TimeoutError:
            return bool(waiting) and any(j.scheduled_at <= self.clock() for j in waiting)
        finally:
            self._waiters.discard(waiter)

    async def set_progress(self, lease: Lease, progress: float, message: str | None) -> bool:
        """See :meth:`Backend.set_progress`."""
        check_progress(progress)
        job = self._held(lease)
        if job is None:
            return False
        self._store(replace(job, progress=progress, progress_message=message))
        return True

    async def register_worker(self, info: WorkerInfo) -> None:
        """See :meth:`Backend.register_worker`."""
        self._workers[info.id] = replace(info, heartbeat_at=self.clock())

    async def unregister_worker(self, worker_id: str) -> None:
        """See :meth:`Backend.unregister_worker`."""
        self._workers.pop(worker_id, None)

    async def claim_schedule_tick(
        self, schedule: str, tick: datetime, job: NewJob | None = None
    ) -> bool:
        """See :meth:`Backend.claim_schedule_tick`."""
        last = self._ticks.get(schedule)
        if last is not None and tick <= last:
            return False
        if job is not None:
            await self.enqueue_many([job])
        self._ticks[schedule] = tick
        return True

    async def last_schedule_tick(self, schedule: str) -> datetime | None:
        """See :meth:`Backend.last_schedule_tick`."""
        return self._ticks.get(schedule)

    async def get_job(self, job_id: str) -> JobRecord | None:
        """See :meth:`Backend.get_job`."""
        job = self._jobs.get(job_id)
        return None if job is None else self._report(job, self.clock())

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        status: JobStatus | None = None,
        task_name: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        """See :meth:`Backend.list_jobs`."""
        check_paging(limit, offset)
        now = self.clock()
        jobs = [self._report(job, now) for job in self._jobs.values()]
        matching = [
            job
            for job in jobs
            if (queue is None or job.queue == queue)
            and (status is None or job.status is status)
            and (task_name is None or job.task_name == task_name)
        ]
        matching.sort(key=lambda j: self._seq[j.id], reverse=True)
        return matching[offset : offset + limit]

    async def count_jobs(self) -> dict[str, dict[JobStatus, int]]:
        """See :meth:`Backend.count_jobs`."""
        now = self.clock()
        counts: dict[str, dict[JobStatus, int]] = {}
        for job in self._jobs.values():
            per_queue = counts.setdefault(job.queue, {})
            status = reported_status(job.status, job.scheduled_at, now)
            per_queue[status] = per_queue.get(status, 0) + 1
        return counts

    async def list_workers(self) -> list[WorkerInfo]:
        """See :meth:`Backend.list_workers`."""
        return [self._workers[key] for key in sorted(self._workers)]

    async def prune_workers(self, older_than: timedelta) -> int:
        """See :meth:`Backend.prune_workers`."""
        cutoff = self.clock() - older_than
        stale = [
            w.id
            for w in self._workers.values()
            if w.heartbeat_at is None or w.heartbeat_at < cutoff
        ]
        for worker_id in stale:
            del self._workers[worker_id]
        return len(stale)

    async def cancel(self, job_id: str) -> JobRecord | None:
        """See :meth:`Backend.cancel`."""
        job = self._jobs.get(job_id)
        now = self.clock()
        if job is None:
            return None
        job = self._store(cancelled(job, now))
        return self._report(job, now)

    async def mark_dead(self, job_id: str, reason: str) -> JobRecord | None:
        """See :meth:`Backend.mark_dead`."""
        job = self._jobs.get(job_id)
        now = self.clock()
        if job is None:
            return None
        job = self._store(killed(job, reason, now))
        return self._report(job, now)

    async def requeue(self, job_id: str) -> JobRecord | None:
        """See :meth:`Backend.requeue`."""
        job = self._jobs.get(job_id)
        now = self.clock()
        if job is None:
            return None
        rerunnable = job.is_finished and job.status is not JobStatus.SUCCEEDED
        if rerunnable and self._active_unique(job.unique_key) is None:
            job = self._store(requeued(job, now))
            self._wake()
        return self._report(job, now)

    async def purge(
        self, older_than: timedelta, statuses: Sequence[JobStatus] | None = None
    ) -> int:
        """See :meth:`Backend.purge`."""
        chosen = purge_statuses(statuses)
        cutoff = self.clock() - older_than
        doomed = [
            job.id
            for job in self._jobs.values()
            if job.status in chosen and job.finished_at is not None and job.finished_at < cutoff
        ]
        for job_id in doomed:
            del self._jobs[job_id]
            del self._seq[job_id]
        return len(doomed)
