"""The PostgreSQL backend (``postgresql://``): one queue for workers on many machines.

Guarantees:

* **Durable and atomic.** Every state change is one statement (or one transaction); a
  committed enqueue or release survives a crash of the worker, the machine or the server.
* **No job to two workers.** An acquire is one ``UPDATE ... FROM (SELECT ... FOR UPDATE
  SKIP LOCKED LIMIT n) RETURNING *``: concurrent workers lock different rows and never wait
  for each other.
* **Few round trips.** ``enqueue_many``, ``acquire``, ``extend_leases`` and ``release``
  each take one statement whatever the number of jobs (batches travel as arrays).
* **Woken by LISTEN/NOTIFY.** The statement that makes a job acquirable also notifies the
  channel ``underway:<schema>`` with the queue's name, so that idle workers on every
  machine wake at once after the commit. A notification sent while a listener is
  reconnecting is lost, so waiting workers also poll every ``poll_interval`` seconds.
* **Transactional enqueue.** :meth:`PostgresBackend.enqueue_in` stores jobs through the
  caller's own connection, inside the caller's transaction: the jobs exist if and only if
  the caller's transaction commits (and workers hear of them only then).
* **Reconnects.** The pool replaces connections the server closed; the listener reconnects
  with backoff and listens again. An operation during an outage raises
  :class:`~underway.errors.BackendError`; the worker retries, keeping every outcome it has
  not recorded yet.
* **Versioned schema.** ``sql/postgres/migrations/NNNN_*.sql`` run in order, each once,
  under an advisory lock, recorded in ``schema_version``; opening a schema migrated by a
  newer underway is refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from underway.backends import _postgres_schema as schema
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
from underway.backends.transitions import cancelled, created, killed, requeued
from underway.errors import BackendError
from underway.job import (
    JobRecord,
    JobStatus,
    Lease,
    LeaseRenewal,
    NewJob,
    Release,
    WorkerInfo,
)

__all__ = ["Connection", "PostgresBackend"]

logger = logging.getLogger("underway.backends.postgres")

#: A connection :meth:`PostgresBackend.enqueue_in` accepts: asyncpg's, or one from its pool.
Connection: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"

_OPTIONS = {"schema", "pool_size", "poll_interval", "connect_timeout"}
#: What the driver raises: server errors, client-side protocol errors, network failures.
_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    asyncio.TimeoutError,
)
#: Errors after which a connection is lost or in an unknown state (everything but a failed
#: statement): the server went away, an operator ended the session, the protocol broke.
_CONNECTION_ERRORS = (
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    asyncio.TimeoutError,
)
_JOB_ID_CONSTRAINT = "jobs_id_key"
_RECONNECT_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


async def _keep_session(_: Connection) -> None:
    """Return a connection to the pool as it is.

    asyncpg's default reset sends ``RESET ALL; UNLISTEN *; ...`` on every release, one more
    round trip per operation. The pool's connections never change session state (migrations
    use ``SET LOCAL`` and a transaction-scoped lock; the listener has a connection of its
    own), and asyncpg still rolls back a transaction left open.
    """


class PostgresBackend(Backend):
    """Jobs in PostgreSQL tables, shared by any number of processes and machines."""

    def __init__(
        self,
        dsn: str,
        *,
        clock: Clock = utc_now,
        schema_name: str = "underway",
        pool_size: int = 10,
        poll_interval: float = 0.5,
        connect_timeout: float = 5.0,
    ) -> None:
        """Create a backend for the database at ``dsn`` (an asyncpg connection string).

        Args:
            dsn: ``postgresql://user:password@host:port/database``, with any asyncpg
                connection parameters (``sslmode``, ...) in its query string.
            clock: Returns the current time as an aware UTC datetime.
            schema_name: The PostgreSQL schema holding underway's tables; created on
                :meth:`open`. Several apps can share a database with different schemas.
            pool_size: The most connections this backend object opens (plus one listener).
            poll_interval: Seconds between looks for due jobs while waiting for work, the
                fallback for lost notifications and how soon a scheduled job is seen.
            connect_timeout: Seconds to wait for a new connection before giving up.

        Raises:
            ValueError: A setting is out of range or the schema name is not an identifier.
        """
        if pool_size < 1 or poll_interval <= 0 or connect_timeout <= 0:
            raise ValueError(
                "pool_size must be >= 1, and poll_interval and connect_timeout > 0 (seconds)."
            )
        self.dsn = dsn
        self.clock = clock
        self.queries = schema.Queries(schema_name)
        self.schema = schema_name
        self.channel = f"underway:{schema_name}"
        self.pool_size = pool_size
        self.poll_interval = poll_interval
        self.connect_timeout = connect_timeout
        parts = urlsplit(dsn)
        self._where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncio.Task[None] | None = None
        self._waiters: dict[asyncio.Future[bool], frozenset[str]] = {}

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = utc_now, **options: str) -> PostgresBackend:
        """Build from ``postgresql://user:password@host:port/database?schema=underway``.

        Query options of underway: ``schema``, ``pool_size``, ``poll_interval`` and
        ``connect_timeout`` (seconds); every other query parameter goes to asyncpg
        (``sslmode``, ``application_name``, ...).
        """
        parts = urlsplit(url)
        if not parts.path.strip("/"):
            raise ValueError(
                f"{url!r} names no database; write postgresql://user@host:5432/dbname."
            )
        driver = [(k, v) for k, v in parse_qsl(parts.query) if k not in _OPTIONS]
        dsn = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(driver)))
        try:
            return cls(
                dsn,
                clock=clock,
                schema_name=options.get("schema", "underway"),
                pool_size=int(options.get("pool_size", 10)),
                poll_interval=float(options.get("poll_interval", 0.5)),
                connect_timeout=float(options.get("connect_timeout", 5.0)),
            )
        except ValueError as exc:
            raise ValueError(f"bad option in {url!r}: {exc}") from exc

    async def __aenter__(self) -> PostgresBackend:
        await self.open()
        return self

    # -- plumbing -------------------------------------------------------------------------

    @asynccontextmanager
    async def _errors(self, what: str) -> AsyncIterator[None]:
        """The one place where driver errors become underway's."""
        try:
            yield
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == _JOB_ID_CONSTRAINT:
                raise ValueError(
                    "job ids must be unique; one of the batch's ids exists or repeats. "
                    "Leave NewJob.id to its default."
                ) from exc
            raise BackendError(f"PostgreSQL at {self._where} could not {what}: {exc}") from exc
        except _CONNECTION_ERRORS as exc:
            raise BackendError(
                f"could not {what}: the connection to PostgreSQL at {self._where} failed or "
                f"was closed ({type(exc).__name__}: {exc}). Is the server running?"
            ) from exc
        except _DRIVER_ERRORS as exc:
            raise BackendError(
                f"PostgreSQL at {self._where} could not {what}: {type(exc).__name__}: {exc}"
            ) from exc

    @asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[Connection]:
        pool = self._pool
        if pool is None:
            raise BackendError(
                f"the PostgreSQL backend for {self._where} is not open; call open() "
                "or use 'async with' first."
            )
        async with self._errors(what), pool.acquire() as conn:
            try:
                yield conn
            except BaseException as exc:
                # A connection the server dropped mid-operation can be left in a state that
                # breaks its next user ("another operation is in progress"): never hand one
                # back to the pool after anything but a failed statement.
                if not isinstance(exc, asyncpg.PostgresError) or isinstance(
                    exc, _CONNECTION_ERRORS
                ):
                    conn.terminate()
                raise

    def _wake(self, queues: Sequence[str] | None = None, value: bool = True) -> None:
        """Wake the waiters for any of ``queues`` (all of them when ``None``)."""
        for waiter, wanted in list(self._waiters.items()):
            if queues is None or not wanted.isdisjoint(queues):
                if not waiter.done():
                    waiter.set_result(value)
                del self._waiters[waiter]

    # -- lifetime -------------------------------------------------------------------------

    async def open(self) -> None:
        """See :meth:`Backend.open`. Migrates the schema and starts listening."""
        if self._pool is not None:
            return
        async with self._errors("open the database"):
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=0,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                reset=_keep_session,
            )
            try:
                async with pool.acquire() as conn:
                    await schema.migrate(conn, self.schema)
                listening = await self._listen_once()
            except BaseException:
                pool.terminate()
                raise
        self._pool = pool
        self._listener = asyncio.create_task(self._listen(listening), name="underway-pg-listen")

    async def close(self) -> None:
        """See :meth:`Backend.close`."""
        self._wake(None, False)
        pool, listener = self._pool, self._listener
        self._pool = self._listener = None
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except (asyncio.TimeoutError, *_DRIVER_ERRORS):
                logger.warning("closing the PostgreSQL pool timed out; terminating it")
                pool.terminate()

    async def _listen_once(self) -> asyncpg.Connection[Any]:
        conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
        try:
            await conn.add_listener(self.channel, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def _listen(self, conn: asyncpg.Connection[Any]) -> None:
        """Keep one connection listening; reconnect with backoff when it drops."""
        failures = 0
        while True:
            lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def on_lost(_: object, lost: asyncio.Future[None] = lost) -> None:
                if not lost.done():
                    lost.set_result(None)

            conn.add_termination_listener(on_lost)
            try:
                if conn.is_closed():
                    on_lost(conn)
                await lost
            finally:
                if not conn.is_closed():
                    await self._close_quietly(conn)
            logger.warning(
                "lost the PostgreSQL notification connection to %s; reconnecting "
                "(waiting workers poll meanwhile)",
                self._where,
            )
            while True:
                delay = _RECONNECT_DELAYS[min(failures, len(_RECONNECT_DELAYS) - 1)]
                await asyncio.sleep(delay)
                try:
                    conn = await self._listen_once()
                except _DRIVER_ERRORS as exc:
                    failures += 1
                    if failures % 10 == 1:
                        logger.warning("cannot listen on %s yet: %s", self._where, exc)
                    continue
                failures = 0
                logger.info("listening on %s again", self._where)
                self._wake()  # notifications sent meanwhile were lost: look again
                break

    @staticmethod
    async def _close_quietly(conn: asyncpg.Connection[Any]) -> None:
        try:
            await asyncio.wait_for(conn.close(), 2)
        except (asyncio.TimeoutError, *_DRIVER_ERRORS):
            conn.terminate()

    def _on_notify(self, _conn: Connection, _pid: int, _channel: str, queue: object) -> None:
        self._wake([str(queue)])

    # -- producers ------------------------------------------------------------------------

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        """See :meth:`Backend.enqueue_many`. One statement, one round trip."""
        if not jobs:
            return []
        async with self._connection(f"enqueue {len(jobs)} job(s)") as conn:
            records = await self._enqueue(conn, jobs)
        self._wake([r.queue for r in records])
        return records

    async def enqueue_in(self, connection: Connection, jobs: Sequence[NewJob]) -> list[JobRecord]:
        """Store jobs through the caller's connection, inside the caller's transaction.

        The jobs become visible, and workers are notified, when the caller's transaction
        commits; a rollback leaves no job. Outside a transaction the statement commits on its
        own. The schema must exist: open a backend on the database once (any process).

        Args:
            connection: An asyncpg connection (or pool connection) of the caller.
            jobs: The jobs, as :meth:`enqueue_many` takes them.

        Returns:
            The jobs' records, as :meth:`enqueue_many` returns them.

        Raises:
            ValueError: Two jobs share an id, or a job with that id exists (the caller's
                transaction is then aborted, as by any failed statement).
            BackendError: The statement failed.
        """
        if not jobs:
            return []
        async with self._errors(f"enqueue {len(jobs)} job(s) in the caller's transaction"):
            return await self._enqueue(connection, jobs)

    async def _enqueue(self, conn: Connection, jobs: Sequence[NewJob]) -> list[JobRecord]:
        now = self.clock()
        records = [created(new, now) for new in jobs]
        args = schema.enqueue_args(records)
        rows = await conn.fetch(self.queries["enqueue"], *args, now, self.channel)
        if not rows:
            return records
        # Jobs with a unique key an active job holds were not stored: return that job.
        skipped = {row["ord"] - 1: row for row in rows}
        first: dict[str, int] = {}  # the first job of the batch with each key
        for i, record in enumerate(records):
            if record.unique_key is not None:
                first.setdefault(record.unique_key, i)
        result = []
        for i, record in enumerate(records):
            row = skipped.get(i)
            if row is None:
                result.append(record)
                continue
            key = record.unique_key
            assert key is not None  # only jobs with a key are skipped
            if row["id"] is not None:
                result.append(schema.decode_job(row, now))
            elif first[key] != i and first[key] not in skipped:
                result.append(records[first[key]])  # stored earlier in this batch
            else:  # committed by a concurrent transaction after this statement's snapshot
                latest = await conn.fetchrow(self.queries["latest_by_unique_key"], key)
                if latest is None:
                    raise BackendError(
                        f"the job holding unique key {key!r} vanished while enqueueing; "
                        "enqueue again."
                    )
                result.append(schema.decode_job(latest, now))
        return result

    # -- workers --------------------------------------------------------------------------

    async def acquire(
        self, queues: Sequence[str], worker_id: str, limit: int, lease: timedelta
    ) -> list[JobRecord]:
        """See :meth:`Backend.acquire`. One statement, one round trip."""
        check_acquire(queues, limit)
        now = self.clock()
        names = list(dict.fromkeys(queues))
        async with self._connection("acquire jobs") as conn:
            rows = await conn.fetch(
                self.queries["acquire"], names, now, limit, worker_id, now + lease
            )
        # RETURNING gives no order; restore the one the rows were chosen in.
        rows.sort(key=lambda r: (-r["priority"], r["scheduled_at"], r["seq"]))
        return [schema.decode_job(row, now) for row in rows]

    async def extend_leases(
        self, worker_id: str, leases: Sequence[Lease], duration: timedelta
    ) -> LeaseRenewal:
        """See :meth:`Backend.extend_leases`. One statement, one round trip."""
        now = self.clock()
        ids = [lease.job_id for lease in leases]
        tokens = [lease.token for lease in leases]
        async with self._connection("extend leases") as conn:
            rows = await conn.fetch(
                self.queries["extend_leases"], ids, tokens, now + duration, now, worker_id
            )
        kept = {row["id"] for row in rows}
        cancel = {row["id"] for row in rows if row["cancel_requested"]}
        return LeaseRenewal(lost=frozenset(set(ids) - kept), cancel_requested=frozenset(cancel))

    async def release(self, worker_id: str, releases: Sequence[Release]) -> list[bool]:
        """See :meth:`Backend.release`. One statement, one round trip."""
        if not releases:
            return []
        args = schema.release_args(releases)
        async with self._connection(f"release {len(releases)} job(s)") as conn:
            rows = await conn.fetch(self.queries["release"], *args, self.clock(), self.channel)
        applied = {row["ord"] - 1 for row in rows}
        return [i in applied for i in range(len(releases))]

    async def release_and_acquire(
        self,
        worker_id: str,
        releases: Sequence[Release],
        queues: Sequence[str],
        limit: int,
        lease: timedelta,
    ) -> tuple[list[bool], list[JobRecord]]:
        """See :meth:`Backend.release_and_acquire`. One statement: one round trip, one commit.

        A job this call puts back in its queue (a retry due now, a requeue) is not among the
        jobs it acquires: the statement sees the queue as it was before.
        """
        check_exchange(queues, limit)
        if not releases:
            return [], (await self.acquire(queues, worker_id, limit, lease) if limit else [])
        if not limit:
            return await self.release(worker_id, releases), []
        return await self._exchange(worker_id, releases, queues, limit, lease)

    async def _exchange(
        self,
        worker_id: str,
        releases: Sequence[Release],
        queues: Sequence[str],
        limit: int,
        lease: timedelta,
    ) -> tuple[list[bool], list[JobRecord]]:
        now = self.clock()
        names = list(dict.fromkeys(queues))
        args = schema.release_args(releases)
        async with self._connection(f"release {len(releases)} job(s) and acquire jobs") as conn:
            rows = await conn.fetch(
                self.queries["exchange"],
                *args,
                now,
                self.channel,
                names,
                limit,
                worker_id,
                now + lease,
            )
        applied_ords = rows[-1]["released"]  # the last row reports the releases
        acquired = rows[:-1]
        # RETURNING gives no order; restore the one the jobs were chosen in.
        acquired.sort(key=lambda r: (-r["priority"], r["scheduled_at"], r["seq"]))
        applied = set(applied_ords)
        return (
            [i in applied for i in range(1, len(releases) + 1)],
            [schema.decode_job(row, now) for row in acquired],
        )

    async def reap_expired(self) -> list[JobRecord]:
        """See :meth:`Backend.reap_expired`. One statement."""
        now = self.clock()
        async with self._connection("reap expired leases") as conn:
            rows = await conn.fetch(self.queries["reap"], now, self.channel)
        return [schema.decode_job(row, now) for row in rows]

    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        """See :meth:`Backend.wait_for_work`. Woken by NOTIFY; polls every ``poll_interval``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        names = list(dict.fromkeys(queues))
        wanted = frozenset(names)
        while self._pool is not None:
            # Wait on the notification before looking, so that none slips between the two.
            waiter: asyncio.Future[bool] = loop.create_future()
            self._waiters[waiter] = wanted
            try:
                if await self._any_due(names):
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                try:
                    return await asyncio.wait_for(waiter, min(remaining, self.poll_interval))
                except asyncio.TimeoutError:
                    continue
            finally:
                self._waiters.pop(waiter, None)
        return False

    async def _any_due(self, queues: list[str]) -> bool:
        try:
            async with self._connection("look for due jobs") as conn:
                return bool(await conn.fetchval(self.queries["any_due"], queues, self.clock()))
        except BackendError as exc:
            logger.warning("%s; looking again in %.1f s", exc, self.poll_interval)
            return False

    async def set_progress(self, lease: Lease, progress: float, message: str | None) -> bool:
        """See :meth:`Backend.set_progress`."""
        check_progress(progress)
        async with self._connection("store progress") as conn:
            status = await conn.execute(
                self.queries["set_progress"], lease.job_id, lease.token, progress, message
            )
        return status == "UPDATE 1"

    async def register_worker(self, info: WorkerInfo) -> None:
        """See :meth:`Backend.register_worker`."""
        async with self._connection("register a worker") as conn:
            await conn.execute(
                self.queries["upsert_worker"], *schema.worker_args(info, self.clock())
            )

    async def unregister_worker(self, worker_id: str) -> None:
        """See :meth:`Backend.unregister_worker`."""
        async with self._connection("unregister a worker") as conn:
            await conn.execute(self.queries["delete_worker"], worker_id)

    # -- schedules ------------------------------------------------------------------------

    async def claim_schedule_tick(
        self, schedule: str, tick: datetime, job: NewJob | None = None
    ) -> bool:
        """See :meth:`Backend.claim_schedule_tick`."""
        what = f"claim a tick of schedule {schedule!r}"
        async with self._connection(what) as conn, conn.transaction():
            won = await conn.fetchval(self.queries["claim_tick"], schedule, tick)
            if won and job is not None:
                await self._enqueue(conn, [job])
        if won and job is not None:
            self._wake([job.queue])
        return bool(won)

    async def last_schedule_tick(self, schedule: str) -> datetime | None:
        """See :meth:`Backend.last_schedule_tick`."""
        async with self._connection(f"read schedule {schedule!r}") as conn:
            tick: datetime | None = await conn.fetchval(self.queries["last_tick"], schedule)
        return tick

    # -- operators ------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> JobRecord | None:
        """See :meth:`Backend.get_job`."""
        async with self._connection("read a job") as conn:
            row = await conn.fetchrow(self.queries["job_by_id"], job_id)
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
        sql, params = schema.list_query(
            self.queries.quoted, queue, status, task_name, limit, offset, now
        )
        async with self._connection("list jobs") as conn:
            rows = await conn.fetch(sql, *params)
        return [schema.decode_job(row, now) for row in rows]

    async def count_jobs(self) -> dict[str, dict[JobStatus, int]]:
        """See :meth:`Backend.count_jobs`."""
        async with self._connection("count jobs") as conn:
            rows = await conn.fetch(self.queries["count_jobs"], self.clock())
        counts: dict[str, dict[JobStatus, int]] = {}
        for queue, reported, n in rows:
            counts.setdefault(queue, {})[JobStatus(reported)] = n
        return counts

    async def list_workers(self) -> list[WorkerInfo]:
        """See :meth:`Backend.list_workers`."""
        async with self._connection("list workers") as conn:
            rows = await conn.fetch(self.queries["list_workers"])
        return [schema.decode_worker(row) for row in rows]

    async def prune_workers(self, older_than: timedelta) -> int:
        """See :meth:`Backend.prune_workers`."""
        async with self._connection("prune workers") as conn:
            pruned: int = await conn.fetchval(
                self.queries["prune_workers"], self.clock() - older_than
            )
        return pruned

    async def cancel(self, job_id: str) -> JobRecord | None:
        """See :meth:`Backend.cancel`."""

        async def change(_: Connection, job: JobRecord, now: datetime) -> JobRecord:
            return cancelled(job, now)

        return await self._change_one(job_id, "cancel a job", change)

    async def mark_dead(self, job_id: str, reason: str) -> JobRecord | None:
        """See :meth:`Backend.mark_dead`."""

        async def change(_: Connection, job: JobRecord, now: datetime) -> JobRecord:
            return killed(job, reason, now)

        return await self._change_one(job_id, "mark a job dead", change)

    async def requeue(self, job_id: str) -> JobRecord | None:
        """See :meth:`Backend.requeue`."""

        async def change(conn: Connection, job: JobRecord, now: datetime) -> JobRecord:
            if not job.is_finished or job.status is JobStatus.SUCCEEDED:
                return job
            active = self.queries["active_by_unique_key"]
            if job.unique_key is not None and await conn.fetchval(active, job.unique_key):
                return job
            return requeued(job, now)

        return await self._change_one(job_id, "requeue a job", change)

    async def _change_one(
        self,
        job_id: str,
        what: str,
        change: Callable[[Connection, JobRecord, datetime], Awaitable[JobRecord]],
    ) -> JobRecord | None:
        """Read a job under a row lock, apply a transition, write it back: one transaction."""
        now = self.clock()
        async with self._connection(what) as conn, conn.transaction():
            row = await conn.fetchrow(self.queries["job_by_id_for_update"], job_id)
            if row is None:
                return None
            job = schema.decode_job(row, now)
            changed = await change(conn, job, now)
            if changed is job:
                return job
            await conn.execute(self.queries["update_job"], *schema.update_args(changed))
            if changed.status is JobStatus.QUEUED:
                await conn.execute(self.queries["notify"], self.channel, changed.queue)
        if changed.status is JobStatus.QUEUED:
            self._wake([changed.queue])
        return changed

    async def purge(
        self, older_than: timedelta, statuses: Sequence[JobStatus] | None = None
    ) -> int:
        """See :meth:`Backend.purge`."""
        chosen = sorted(s.value for s in purge_statuses(statuses))
        async with self._connection("purge jobs") as conn:
            deleted: int = await conn.fetchval(
                self.queries["purge"], chosen, self.clock() - older_than
            )
        return deleted
