"""The SQLite backend (``sqlite:///path.db``): the zero-configuration durable store.

Guarantees:

* **Crash-safe.** Every state change is one transaction; the database is in WAL mode with
  ``synchronous=FULL`` by default, so a committed enqueue or release survives a crash of the
  process or of the machine (``?synchronous=normal`` trades the latter for speed).
* **Several processes, one file.** Every write starts with ``BEGIN IMMEDIATE``, which takes
  the database's write lock before reading, so the selection and the update of an acquire
  (one ``UPDATE ... WHERE seq IN (SELECT ... LIMIT n) RETURNING *``) see no other writer: no
  job is acquired twice. Writers wait up to ``busy_timeout`` seconds for the lock.
* **One machine.** SQLite's locking needs a local file system: use Redis or PostgreSQL for
  workers on several machines.
* **Versioned schema.** ``sql/sqlite/migrations/NNNN_*.sql`` run in order, each once,
  recorded in ``schema_version``; opening a file migrated by a newer underway is refused.

The stdlib ``sqlite3`` module runs on one dedicated thread per backend object, so the event
loop never blocks on the disk. Idle workers learn of jobs enqueued by this object at once
and of jobs enqueued by other processes by polling every ``poll_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from os import PathLike, fspath
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from underway.backends import _sqlite_schema as schema
from underway.backends._sqlite_thread import DatabaseThread
from underway.backends.base import (
    Backend,
    Clock,
    check_acquire,
    check_exchange,
    check_paging,
    check_progress,
    purge_statuses,
    utc_now,
)
from underway.backends.transitions import (
    cancelled,
    created,
    killed,
    reaped,
    released,
    requeued,
)
from underway.errors import BackendError, CorruptRecordError
from underway.job import (
    JobRecord,
    JobStatus,
    Lease,
    LeaseRenewal,
    NewJob,
    OutcomeKind,
    Release,
    WorkerInfo,
)

__all__ = ["SQLiteBackend"]

logger = logging.getLogger("underway.backends.sqlite")

T = TypeVar("T")
Q = schema.QUERIES
_SYNCHRONOUS = ("off", "normal", "full", "extra")


class SQLiteBackend(Backend):
    """Jobs in an SQLite file shared by the processes of one machine."""

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        clock: Clock = utc_now,
        busy_timeout: float = 5.0,
        poll_interval: float = 0.05,
        synchronous: str = "full",
    ) -> None:
        """Create a backend for the database at ``path`` (``":memory:"`` for a private one).

        Args:
            path: The database file; created with its schema on :meth:`open`.
            clock: Returns the current time as an aware UTC datetime.
            busy_timeout: Seconds a write waits for another process's write lock.
            poll_interval: Seconds between looks for due jobs while waiting for work.
            synchronous: SQLite's ``synchronous`` setting: ``"full"`` (survives power loss)
                or ``"normal"`` (survives a process crash, faster).

        Raises:
            ValueError: A setting is out of range.
        """
        if busy_timeout < 0 or poll_interval <= 0:
            raise ValueError("busy_timeout must be >= 0 and poll_interval > 0 (seconds).")
        if synchronous.lower() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}.")
        self.path = fspath(path)
        self.clock = clock
        self.busy_timeout = busy_timeout
        self.poll_interval = poll_interval
        self.synchronous = synchronous.lower()
        self._thread: DatabaseThread | None = None
        self._waiters: set[asyncio.Future[bool]] = set()

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = utc_now, **options: str) -> SQLiteBackend:
        """Build from ``sqlite:///relative.db``, ``sqlite:////abs.db`` or ``sqlite:///:memory:``.

        Query options: ``busy_timeout``, ``poll_interval`` (seconds) and ``synchronous``.
        """
        path = unquote(urlsplit(url).path)[1:]
        if not path:
            raise ValueError(
                f"{url!r} names no database file; write sqlite:///underway.db (relative) "
                "or sqlite:////var/lib/app/underway.db (absolute)."
            )
        unknown = set(options) - {"busy_timeout", "poll_interval", "synchronous"}
        if unknown:
            raise ValueError(
                f"unknown sqlite:// options {sorted(unknown)}; "
                "supported: busy_timeout, poll_interval, synchronous."
            )
        try:
            return cls(
                path,
                clock=clock,
                busy_timeout=float(options.get("busy_timeout", 5.0)),
                poll_interval=float(options.get("poll_interval", 0.05)),
                synchronous=options.get("synchronous", "full"),
            )
        except ValueError as exc:
            raise ValueError(f"bad option in {url!r}: {exc}") from exc

    # -- plumbing -------------------------------------------------------------------------

    async def _submit(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        thread = self._thread
        if thread is None:
            raise BackendError(
                f"the SQLite backend for {self.path!r} is not open; call open() "
                "or use 'async with' first."
            )
        try:
            result: T = await thread.call(fn, args, write)
        except sqlite3.Error as exc:
            # The one place where driver errors become underway's.
            raise BackendError(f"SQLite database {self.path!r}: {exc}") from exc
        return result

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on the database thread (a read: no transaction)."""
        return await self._submit(fn, args, False)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in a write transaction, committed before it returns."""
        return await self._submit(fn, args, True)

    def _wake(self, value: bool = True) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(value)
        self._waiters.clear()

    # -- lifetime -------------------------------------------------------------------------

    async def open(self) -> None:
        """See :meth:`Backend.open`."""
        if self._thread is not None:
            return
        thread = DatabaseThread(
            functools.partial(schema.connect, self.path, self.busy_timeout, self.synchronous),
            "underway-sqlite",
        )
        try:
            await thread.start()
        except sqlite3.Error as exc:
            raise BackendError(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        self._thread = thread

    async def close(self) -> None:
        """See :meth:`Backend.close`."""
        self._wake(False)
        thread, self._thread = self._thread, None
        if thread is not None:
            await thread.stop()

    # -- producers ------------------------------------------------------------------------

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        """See :meth:`Backend.enqueue_many`."""
        if not jobs:
            return []
        records = await self._write(_enqueue, list(jobs), self.clock())
        self._wake()
        return records

    # -- workers --------------------------------------------------------------------------

    async def acquire(
        self, queues: Sequence[str], worker_id: str, limit: int, lease: timedelta
    ) -> list[JobRecord]:
        """See :meth:`Backend.acquire`."""
        check_acquire(queues, limit)
        now = self.clock()
        return await self._write(_acquire, list(queues), worker_id, limit, now, now + lease)

    async def extend_leases(
        self, worker_id: str, leases: Sequence[Lease], duration: timedelta
    ) -> LeaseRenewal:
        """See :meth:`Backend.extend_leases`."""
        now = self.clock()
        return await self._write(_extend, worker_id, list(leases), now, now + duration)

    async def release(self, worker_id: str, releases: Sequence[Release]) -> list[bool]:
        """See :meth:`Backend.release`."""
        if not releases:
            return []
        applied = await self._write(_release, list(releases), self.clock())
        self._wake()
        return applied

    async def release_and_acquire(
        self,
        worker_id: str,
        releases: Sequence[Release],
        queues: Sequence[str],
        limit: int,
        lease: timedelta,
    ) -> tuple[list[bool], list[JobRecord]]:
        """See :meth:`Backend.release_and_acquire`. One transaction: one commit for both."""
        check_exchange(queues, limit)
        now = self.clock()
        applied, records = await self._write(
            _release_and_acquire, list(releases), list(queues), worker_id, limit, now, now + lease
        )
        if releases:
            self._wake()
        return applied, records

    async def reap_expired(self) -> list[JobRecord]:
        """See :meth:`Backend.reap_expired`."""
        records = await self._write(_reap, self.clock())
        if records:
            self._wake()
        return records

    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        """See :meth:`Backend.wait_for_work`. Polls every ``poll_interval`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        sql = schema.with_placeholders(Q["any_due"], "queues", len(queues))
        while self._thread is not None:
            due = await self._call(_exists, sql, [*queues, schema.to_us(self.clock())])
            if due:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            waiter: asyncio.Future[bool] = loop.create_future()
            self._waiters.add(waiter)
            try:
                return await asyncio.wait_for(waiter, min(remaining, self.poll_interval))
            except asyncio.TimeoutError:
                continue
            finally:
                self._waiters.discard(waiter)
        return False

    async def set_progress(self, lease: Lease, progress: float, message: str | None) -> bool:
        """See :meth:`Backend.set_progress`."""
        check_progress(progress)
        params = {"id": lease.job_id, "token": lease.token, "progress": progress}
        changed = await self._write(_changes, Q["set_progress"], {**params, "message": message})
        return changed == 1

    async def register_worker(self, info: WorkerInfo) -> None:
        """See :meth:`Backend.register_worker`."""
        await self._write(_changes, Q["upsert_worker"], schema.worker_params(info, self.clock()))

    async def unregister_worker(self, worker_id: str) -> None:
        """See :meth:`Backend.unregister_worker`."""
        await self._write(_changes, Q["delete_worker"], {"id": worker_id})

    # -- schedules ------------------------------------------------------------------------

    async def claim_schedule_tick(
        self, schedule: str, tick: datetime, job: NewJob | None = None
    ) -> bool:
        """See :meth:`Backend.claim_schedule_tick`."""
        won = await self._write(_claim_tick, schedule, schema.to_us(tick), job, self.clock())
        if won and job is not None:
            self._wake()
        return won

    async def last_schedule_tick(self, schedule: str) -> datetime | None:
        """See :meth:`Backend.last_schedule_tick`."""
        row = await self._call(_fetch_one, Q["last_tick"], {"name": schedule})
        return None if row is None else schema.from_us(row[0])

    # -- operators ------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> JobRecord | None:
        """See :meth:`Backend.get_job`."""
        row = await self._call(_fetch_one, Q["job_by_id"], {"id": job_id})
        return None if row is None else schema.decode_job(row, self.clock())

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
        sql, params = schema.list_query(queue, status, task_name, limit, offset, now)
        rows = await self._call(_fetch_all, sql, params)
        records = []
        for row in rows:
            try:
                records.append(schema.decode_job(row, now))
            except CorruptRecordError as exc:
                logger.warning("skipping a job that cannot be read: %s", exc)
        return records

    async def count_jobs(self) -> dict[str, dict[JobStatus, int]]:
        """See :meth:`Backend.count_jobs`."""
        params = {"now": schema.to_us(self.clock())}
        rows = await self._call(_fetch_all, Q["count_jobs"], params)
        counts: dict[str, dict[JobStatus, int]] = {}
        for queue, reported, n in rows:
            try:
                status = JobStatus(reported)
            except ValueError:
                logger.warning("%d job(s) in queue %r have unknown status %r", n, queue, reported)
                continue
            counts.setdefault(queue, {})[status] = n
        return counts

    async def list_workers(self) -> list[WorkerInfo]:
        """See :meth:`Backend.list_workers`."""
        rows = await self._call(_fetch_all, Q["list_workers"], {})
        return [schema.decode_worker(row) for row in rows]

    async def prune_workers(self, older_than: timedelta) -> int:
        """See :meth:`Backend.prune_workers`."""
        cutoff = schema.to_us(self.clock() - older_than)
        return await self._write(_changes, Q["prune_workers"], {"cutoff": cutoff})

    async def cancel(self, job_id: str) -> JobRecord | None:
        """See :meth:`Backend.cancel`."""
        return await self._write(_change_one, job_id, self.clock(), cancelled)

    async def mark_dead(self, job_id: str, reason: str) -> JobRecord | None:
        """See :meth:`Backend.mark_dead`."""
        return await self._write(
            _change_one, job_id, self.clock(), lambda job, now: killed(job, reason, now)
        )

    async def requeue(self, job_id: str) -> JobRecord | None:
        """See :meth:`Backend.requeue`."""
        record = await self._write(_requeue, job_id, self.clock())
        if record is not None and record.status is JobStatus.QUEUED:
            self._wake()
        return record

    async def purge(
        self, older_than: timedelta, statuses: Sequence[JobStatus] | None = None
    ) -> int:
        """See :meth:`Backend.purge`."""
        chosen = sorted(s.value for s in purge_statuses(statuses))
        sql = schema.with_placeholders(Q["purge"], "statuses", len(chosen))
        cutoff = schema.to_us(self.clock() - older_than)
        return await self._write(_changes, sql, [*chosen, cutoff])


# -- work done on the database thread; writers run inside schema.transaction ---------------


def _fetch_one(conn: sqlite3.Connection, sql: str, params: Any) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(sql, params).fetchone()
    return row


def _fetch_all(conn: sqlite3.Connection, sql: str, params: Any) -> list[sqlite3.Row]:
    return conn.execute(sql, params).fetchall()


def _exists(conn: sqlite3.Connection, sql: str, params: Any) -> bool:
    return conn.execute(sql, params).fetchone() is not None


def _changes(conn: sqlite3.Connection, sql: str, params: Any) -> int:
    return conn.execute(sql, params).rowcount


def _insert(conn: sqlite3.Connection, new: NewJob, now: datetime) -> JobRecord:
    if new.unique_key is not None:
        row = conn.execute(Q["active_by_unique_key"], {"unique_key": new.unique_key}).fetchone()
        if row is not None:
            return schema.decode_job(row, now)
    record = created(new, now)
    try:
        conn.execute(Q["insert_job"], schema.insert_params(record))
    except sqlite3.IntegrityError as exc:
        raise ValueError(
            f"job ids must be unique; {new.id!r} exists. Leave NewJob.id to its default."
        ) from exc
    return record


def _enqueue(conn: sqlite3.Connection, jobs: list[NewJob], now: datetime) -> list[JobRecord]:
    if any(new.unique_key is not None for new in jobs):
        return [_insert(conn, new, now) for new in jobs]
    # Without unique keys there is nothing to look up: one executemany for the batch.
    records = [created(new, now) for new in jobs]
    try:
        conn.executemany(Q["insert_job"], [schema.insert_params(r) for r in records])
    except sqlite3.IntegrityError as exc:
        raise ValueError(
            "job ids must be unique; one of the batch's ids exists or repeats. "
            "Leave NewJob.id to its default."
        ) from exc
    return records


def _acquire(
    conn: sqlite3.Connection,
    queues: list[str],
    worker_id: str,
    limit: int,
    now: datetime,
    expires_at: datetime,
) -> list[JobRecord]:
    sql = schema.with_placeholders(Q["acquire"], "queues", len(queues))
    now_us = schema.to_us(now)
    params = [worker_id, schema.to_us(expires_at), now_us, *queues, now_us, limit]
    rows = conn.execute(sql, params).fetchall()
    # RETURNING gives no order; restore the one the rows were chosen in.
    rows.sort(key=lambda r: (-_sort_int(r["priority"]), _sort_int(r["scheduled_at"]), r["seq"]))
    records = []
    for row in rows:
        try:
            records.append(schema.decode_job(row, now))
        except CorruptRecordError as exc:
            _bury(conn, row, exc, now)
    return records


def _bury(
    conn: sqlite3.Connection, row: sqlite3.Row, exc: CorruptRecordError, now: datetime
) -> None:
    """Move a row that cannot be decoded to dead, with the decoding error as the reason."""
    logger.error("job %r cannot be read and goes to dead: %s", row["id"], exc)
    params = {"seq": row["seq"], "reason": f"malformed record: {exc}", "now": schema.to_us(now)}
    conn.execute(Q["mark_undecodable"], params)


def _sort_int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _extend(
    conn: sqlite3.Connection,
    worker_id: str,
    leases: list[Lease],
    now: datetime,
    expires_at: datetime,
) -> LeaseRenewal:
    expires_us = schema.to_us(expires_at)
    kept, cancel = set(), set()
    for lease in leases:
        params = {"id": lease.job_id, "token": lease.token, "expires_at": expires_us}
        row = conn.execute(Q["extend_lease"], params).fetchone()
        if row is not None:
            kept.add(lease.job_id)
            if row["cancel_requested"]:
                cancel.add(lease.job_id)
    conn.execute(Q["touch_worker"], {"id": worker_id, "now": schema.to_us(now)})
    lost = {lease.job_id for lease in leases} - kept
    return LeaseRenewal(lost=frozenset(lost), cancel_requested=frozenset(cancel))


def _release(conn: sqlite3.Connection, releases: list[Release], now: datetime) -> list[bool]:
    successes = [item for item in releases if item.outcome.kind is OutcomeKind.SUCCESS]
    done = _release_successes(conn, successes, now) if successes else set()
    applied = []
    for item in releases:
        if item.outcome.kind is OutcomeKind.SUCCESS:
            applied.append((item.lease.job_id, item.lease.token) in done)
            continue
        params = {"id": item.lease.job_id, "token": item.lease.token}
        row = conn.execute(Q["held_job"], params).fetchone()
        if row is None:
            applied.append(False)
            continue
        job = released(schema.decode_job(row, now), item.outcome, now)
        conn.execute(Q["update_job"], schema.update_params(job))
        applied.append(True)
    return applied


#: Successes released by one statement (three parameters each, far below SQLite's limit).
_RELEASE_CHUNK = 500


def _release_successes(
    conn: sqlite3.Connection, successes: list[Release], now: datetime
) -> set[tuple[str, int]]:
    """Release every success in one statement per chunk; return the (id, token) applied."""
    done: set[tuple[str, int]] = set()
    now_us = schema.to_us(now)
    for start in range(0, len(successes), _RELEASE_CHUNK):
        chunk = successes[start : start + _RELEASE_CHUNK]
        sql = Q["release_successes"].replace("{values}", ", ".join(["(?, ?, ?)"] * len(chunk)))
        params: list[Any] = [now_us]
        for item in chunk:
            params += (item.lease.job_id, item.lease.token, item.outcome.result)
        done.update((row[0], row[1]) for row in conn.execute(sql, params))
    return done


def _release_and_acquire(
    conn: sqlite3.Connection,
    releases: list[Release],
    queues: list[str],
    worker_id: str,
    limit: int,
    now: datetime,
    expires_at: datetime,
) -> tuple[list[bool], list[JobRecord]]:
    applied = _release(conn, releases, now)
    records = _acquire(conn, queues, worker_id, limit, now, expires_at) if limit else []
    return applied, records


def _reap(conn: sqlite3.Connection, now: datetime) -> list[JobRecord]:
    rows = conn.execute(Q["expired_leases"], {"now": schema.to_us(now)}).fetchall()
    records = []
    for row in rows:
        try:
            job = reaped(schema.decode_job(row, now), now)
        except CorruptRecordError as exc:
            _bury(conn, row, exc, now)
            continue
        conn.execute(Q["update_job"], schema.update_params(job))
        records.append(job)
    return records


def _change_one(
    conn: sqlite3.Connection,
    job_id: str,
    now: datetime,
    change: Callable[[JobRecord, datetime], JobRecord],
) -> JobRecord | None:
    row = conn.execute(Q["job_by_id"], {"id": job_id}).fetchone()
    if row is None:
        return None
    job = schema.decode_job(row, now)
    changed = change(job, now)
    if changed is not job:
        conn.execute(Q["update_job"], schema.update_params(changed))
    return changed


def _requeue(conn: sqlite3.Connection, job_id: str, now: datetime) -> JobRecord | None:
    row = conn.execute(Q["job_by_id"], {"id": job_id}).fetchone()
    if row is None:
        return None
    job = schema.decode_job(row, now)
    if not job.is_finished or job.status is JobStatus.SUCCEEDED:
        return job
    if job.unique_key is not None:
        taken = conn.execute(Q["active_by_unique_key"], {"unique_key": job.unique_key})
        if taken.fetchone() is not None:
            return job
    changed = requeued(job, now)
    conn.execute(Q["update_job"], schema.update_params(changed))
    return changed


def _claim_tick(
    conn: sqlite3.Connection, schedule: str, tick_us: int, job: NewJob | None, now: datetime
) -> bool:
    won = conn.execute(Q["claim_tick"], {"name": schedule, "tick": tick_us}).rowcount == 1
    if won and job is not None:
        _insert(conn, job, now)
    return won
