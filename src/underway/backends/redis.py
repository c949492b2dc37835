"""The Redis backend (``redis://``, ``rediss://``): one queue for workers on many machines.

Every state change is one Lua script (``lua/*.lua``, with the helpers of ``lua/lib.lua``),
run atomically by the server and called by its SHA (``EVALSHA``, loaded on first use):

* ``acquire`` leases up to ``limit`` jobs in one round trip; ``release`` records any
  number of outcomes in one round trip; ``enqueue_many`` stores a batch in one.
* Keys, under a prefix (default ``underway``; ``?prefix=myapp``), so apps share a server:

  ====================================  ===============================================
  ``P:job:<id>``                        hash: the job's fields (times in microseconds)
  ``P:queue:<queue>``                   sorted set of due jobs: score -priority, member
                                        scheduled_at + seq + id (so FIFO within a score)
  ``P:scheduled:<queue>``               sorted set of future jobs by scheduled_at
  ``P:running``                         sorted set of leased jobs by lease expiry
  ``P:finished:<queue>:<status>``       sorted set of finished jobs by finished_at
  ``P:jobs``                            sorted set of every job by enqueue order
  ``P:unique``                          hash: unique key -> id of the active job
  ``P:queues``, ``P:seq``               known queue names; the enqueue counter
  ``P:workers``, ``P:heartbeats``       the worker registry and last heartbeats
  ``P:acquired:<worker>``               the worker's last acquires (to answer a retry)
  ``P:ticks``                           hash: schedule -> last claimed tick
  ``P:idle:<queue>``                    sorted set of workers waiting on the queue, by
                                        when their wait ends
  ``P:idler:<worker>``                  hash: a waiting worker's free slots, lease, queues
  ``P:handoff:<worker>``                list: what a waiting worker was handed (a job
                                        leased to it, or a wake)
  ``P:wake``                            pub/sub channel: a queue got a due job
  ====================================  ===============================================

* An idle worker (:meth:`RedisBackend.wait_for_jobs`) registers on its queues and blocks
  on its own handoff list, on a connection of its own. An enqueue that finds it leases the
  new job to it in the same script and pushes the record, which the server delivers at
  once: the job starts without a further round trip. A script that makes a job due in
  another way (a retry, a reaped lease, a promoted scheduled job) pushes a wake, and the
  worker acquires. Its wait also ends when the earliest scheduled job comes due. No
  polling. (:meth:`RedisBackend.wait_for_work` waits on the ``P:wake`` channel instead, one
  pub/sub connection per backend object, published to when a queue's due set stops being
  empty or gets an earlier scheduled job.)
* A dropped connection or a restarting server is retried for ``retry_for`` seconds (default
  5) before :class:`~underway.errors.BackendError` is raised. Every script is safe to run
  twice: a retry after a lost reply finds the work done (an enqueue's jobs, an acquire's
  leases, a release's outcome, a schedule's tick) and answers as the first run would have.
* Times come from the backend's clock, not the server's, like every backend.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis import exceptions as rx
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from underway.backends import _redis_wire as wire
from underway.backends._redis_records import (
    decode_job,
    decode_leased,
    decode_worker,
    encode_worker,
    from_us,
    load_script,
    new_job_args,
    opt,
    parse_url,
    release_args,
    to_us,
    unpack_record,
)
from underway.backends._redis_waiting import Waiting
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
from underway.backends.transitions import created
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

__all__ = ["RedisBackend"]

logger = logging.getLogger("underway.backends.redis")

T = TypeVar("T")

#: The data layout this version writes; a server holding a newer one is refused.
SCHEMA_VERSION = 1
_SCRIPTS = (
    "acquire",
    "cancel",
    "claim",
    "count",
    "enqueue",
    "extend",
    "idle",
    "list",
    "mark_dead",
    "probe",
    "progress",
    "prune",
    "purge",
    "reap",
    "release",
    "requeue",
    "unidle",
)
_BATCH = 1000  # jobs examined per script call by reap, purge and list
_REAP_REASON = "the lease expired (the worker stopped)"
_SAFE_POLICIES = ("noeviction", "volatile-")  # our keys never have a TTL
#: Outcomes that put a job back in its queue, where waiting workers may take it.
_BACK = frozenset({OutcomeKind.RETRY, OutcomeKind.REQUEUE})


class RedisBackend(Backend):
    """Jobs in Redis, shared by workers on any number of machines."""

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str | None = None,
        retry_for: float | None = None,
        clock: Clock = utc_now,
    ) -> None:
        """Create a backend for the server at ``url`` (nothing connects until :meth:`open`).

        Args:
            url: ``redis://[user:password@]host[:port][/db][?options]``, or ``rediss://``
                for TLS. Options: ``prefix`` and ``retry_for`` (below), and redis-py's
                ``db``, ``socket_timeout``, ``socket_connect_timeout``,
                ``health_check_interval``, ``client_name``, ``max_connections`` and
                ``ssl_*`` settings (``ssl_ca_certs``, ``ssl_cert_reqs``, ...).
            prefix: The start of every key name (default ``underway``); apps sharing a
                server use different prefixes. Overrides the URL's.
            retry_for: Seconds to keep retrying a call while the server cannot be reached
                (default 5) before raising ``BackendError``. Overrides the URL's.
            clock: Returns the current time as an aware UTC datetime.

        Raises:
            ValueError: The URL or an option is malformed or unknown.
        """
        config = parse_url(url, prefix, retry_for)
        self.prefix, self.retry_for, self.db = config.prefix, config.retry_for, config.db
        #: Where the server is, for messages (never with the password).
        self.where = config.where
        self._driver_url = config.driver_url
        self.clock = clock
        self._pool: aioredis.ConnectionPool | None = None
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._wire: wire.Wire | None = None  # the lean connection of the hot scripts
        self._names: dict[bytes, str] = {}  # task, queue and worker names, decoded once
        self._waiting = Waiting(self)

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = utc_now, **options: str) -> RedisBackend:
        """Build from ``redis://...`` or ``rediss://...``; the options are in the URL."""
        return cls(url, clock=clock)

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- plumbing -------------------------------------------------------------------------

    async def _call(self, what: str, attempt: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Run ``attempt`` until it succeeds or ``retry_for`` runs out.

        The one place where driver errors become underway's.
        """
        client = self._client
        if client is None:
            raise BackendError(
                f"the Redis backend for {self.where} is not open; call open() or use "
                "'async with' first."
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for
        delay = 0.02
        while True:
            try:
                return await attempt(client)
            except (rx.AuthenticationError, rx.AuthorizationError) as exc:
                raise BackendError(f"Redis at {self.where} refused to log in: {exc}") from exc
            except (rx.ConnectionError, rx.TimeoutError) as exc:
                if isinstance(exc.__context__, ssl.SSLError):  # a bad certificate stays bad
                    raise BackendError(f"Redis at {self.where}: TLS failed: {exc}") from exc
                left = deadline - loop.time()
                if left <= 0 or self._client is None:
                    raise BackendError(
                        f"Redis at {self.where} is unreachable: {what} failed after retrying "
                        f"for {self.retry_for:g} s ({type(exc).__name__}: {exc})"
                    ) from exc
                # A pooled connection the server closed fails once and is replaced: a
                # second failure in a row is worth one warning per call.
                log = logger.warning if delay == 0.04 else logger.debug
                log("Redis at %s: %s failed (%s); retrying.", self.where, what, exc)
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, 0.5)
            except rx.ResponseError as exc:
                message = str(exc)
                if "UNDERWAY_DUPLICATE_ID" in message:
                    raise ValueError(message.split("UNDERWAY_DUPLICATE_ID", 1)[1].strip()) from None
                hint = ""
                if "maxmemory" in message:
                    hint = (
                        " (Redis is full: delete finished jobs with 'underway jobs purge', or "
                        "raise its maxmemory)"
                    )
                raise BackendError(f"Redis at {self.where}: {what} failed: {exc}{hint}") from exc
            except rx.RedisError as exc:
                raise BackendError(f"Redis at {self.where}: {what} failed: {exc}") from exc

    async def _run(self, name: str, args: Sequence[str | bytes | int]) -> Any:
        (reply,) = await self._call(name, lambda client: self._evals(client, [(name, args)]))
        return reply

    async def _evals(
        self, client: aioredis.Redis, calls: Sequence[tuple[str, Sequence[str | bytes | int]]]
    ) -> list[Any]:
        """Run scripts (name and arguments after the prefix) in one round trip, in order.

        Through the lean connection when there is one, else through redis-py. A server that
        lost the scripts (restarted, flushed) gets them again and runs the calls again:
        every script is safe to run twice (see the module docstring).

        Raises:
            redis.exceptions.ResponseError: A script failed (the first failure is raised).
        """
        commands = [
            ("EVALSHA", self._scripts[name].sha, 0, self.prefix, *args) for name, args in calls
        ]
        replies = await self._send(client, commands)
        if any(_missing_script(reply) for reply in replies):
            names = dict.fromkeys(name for name, _ in calls)
            await self._send(client, [("SCRIPT", "LOAD", self._scripts[n].script) for n in names])
            replies = await self._send(client, commands)
        for reply in replies:
            if isinstance(reply, rx.ResponseError):
                raise reply
        return replies

    async def _send(
        self, client: aioredis.Redis, commands: Sequence[Sequence[str | bytes | int]]
    ) -> list[Any]:
        if self._wire is not None:
            return await self._wire.call_many(commands)
        async with client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))

    # -- lifetime -------------------------------------------------------------------------

    async def open(self) -> None:
        """See :meth:`Backend.open`. Warns when the server may evict underway's keys."""
        if self._client is not None:
            return
        self._waiting.reopen()
        self._pool = pool = aioredis.ConnectionPool.from_url(
            self._driver_url, retry=Retry(NoBackoff(), 0)
        )
        self._client = client = aioredis.Redis(connection_pool=pool)
        if wire.AVAILABLE:
            self._wire = wire.Wire(pool.connection_class(**pool.connection_kwargs))
        self._scripts = {name: client.register_script(load_script(name)) for name in _SCRIPTS}
        try:
            await self._check_server()
        except BaseException:
            await self.close()
            raise

    async def _check_server(self) -> None:
        version_key = self._key("version")

        async def setup(client: aioredis.Redis) -> Any:
            async with client.pipeline(transaction=False) as pipe:
                pipe.set(version_key, SCHEMA_VERSION, nx=True)
                pipe.get(version_key)
                return (await pipe.execute())[1]

        stored = await self._call("open", setup)
        if int(stored) > SCHEMA_VERSION:
            raise BackendError(
                f"Redis at {self.where} holds underway data of layout version {int(stored)} "
                f"under the prefix {self.prefix!r}; this underway knows up to "
                f"{SCHEMA_VERSION}. Upgrade underway."
            )
        try:
            info = await self._call("open", lambda client: client.info("memory"))
        except BackendError as exc:  # e.g. an ACL user without INFO: say so, carry on
            logger.info("Could not read the maxmemory-policy of Redis at %s: %s", self.where, exc)
            return
        policy = str(info.get("maxmemory_policy", "noeviction"))
        if not policy.startswith(_SAFE_POLICIES):
            logger.warning(
                "Redis at %s has maxmemory-policy %s: when it reaches its memory limit it may "
                "evict underway's keys, and jobs would silently vanish. Set "
                "'maxmemory-policy noeviction' (redis.conf, or CONFIG SET maxmemory-policy "
                "noeviction); a volatile-* policy is safe too, as underway's keys have no TTL.",
                self.where,
                policy,
            )

    async def close(self) -> None:
        """See :meth:`Backend.close`."""
        await self._waiting.close()
        client, pool, lean = self._client, self._pool, self._wire
        self._client = self._pool = self._wire = None
        if lean is not None:
            lean.close()
        if client is not None:
            await client.aclose()
        if pool is not None:
            await pool.disconnect()

    # -- producers ------------------------------------------------------------------------

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        """See :meth:`Backend.enqueue_many`."""
        if not jobs:
            return []
        if len({job.id for job in jobs}) != len(jobs):
            raise ValueError("job ids must be unique; leave NewJob.id to its default.")
        now = self.clock()
        args: list[str | bytes] = [str(to_us(now)), secrets.token_hex(8), str(len(jobs))]
        for job in jobs:
            args += new_job_args(job)
        reply = await self._run("enqueue", args)
        self._waiting.wake({job.queue for job in jobs})
        return [
            created(job, now) if item == 0 else decode_job(unpack_record(item), now)
            for job, item in zip(jobs, reply, strict=True)
        ]

    # -- workers --------------------------------------------------------------------------

    async def acquire(
        self, queues: Sequence[str], worker_id: str, limit: int, lease: timedelta
    ) -> list[JobRecord]:
        """See :meth:`Backend.acquire`."""
        check_acquire(queues, limit)
        _, records = await self._exchange(worker_id, (), queues, limit, lease)
        return records

    async def release_and_acquire(
        self,
        worker_id: str,
        releases: Sequence[Release],
        queues: Sequence[str],
        limit: int,
        lease: timedelta,
    ) -> tuple[list[bool], list[JobRecord]]:
        """See :meth:`Backend.release_and_acquire`. Both scripts in one round trip."""
        check_exchange(queues, limit)
        return await self._exchange(worker_id, releases, queues, limit, lease)

    async def _exchange(
        self,
        worker_id: str,
        releases: Sequence[Release],
        queues: Sequence[str],
        limit: int,
        lease: timedelta,
    ) -> tuple[list[bool], list[JobRecord]]:
        """Run the release script, then the acquire script: one round trip."""
        acquire_nonce, release_nonce = secrets.token_hex(8), secrets.token_hex(8)
        release_tail: list[str | bytes | int] = [release_nonce, str(len(releases))]
        for item in releases:
            release_tail += release_args(item)
        moments: list[tuple[datetime, datetime]] = []  # each try's now and lease expiry

        async def attempt(client: aioredis.Redis) -> list[Any]:
            # A retry takes a fresh "now", so a lease never starts out expired.
            now = self.clock()
            moments.append((now, now + lease))
            now_us = to_us(now)
            calls: list[tuple[str, Sequence[str | bytes | int]]] = []
            if releases:
                calls.append(("release", [now_us, *release_tail]))
            if limit:
                head: list[str | bytes | int] = [
                    now_us,
                    to_us(moments[-1][1]),
                    worker_id,
                    limit,
                    acquire_nonce,
                ]
                calls.append(("acquire", [*head, *queues]))
            return await self._evals(client, calls)

        replies = await self._call("release and acquire", attempt)
        applied: list[bool] = []
        if releases:
            applied = [bool(flag) for flag in replies[0]]
            if any(item.outcome.kind in _BACK for item in releases):
                self._waiting.wake(None)
        records = []
        now, expires = moments[-1]
        for item in replies[-1] if limit else ():
            try:
                if isinstance(item, list):  # leased now; a retry's answer is a packed record
                    records.append(decode_leased(item, now, expires, worker_id, self._names))
                else:
                    records.append(decode_job(unpack_record(item), now))
            except CorruptRecordError as exc:
                job_id = _record_id(item)
                logger.error("Job %r cannot be read and goes to dead: %s", job_id, exc)
                await self.mark_dead(job_id, f"malformed record: {exc}")
        return applied, records

    async def extend_leases(
        self, worker_id: str, leases: Sequence[Lease], duration: timedelta
    ) -> LeaseRenewal:
        """See :meth:`Backend.extend_leases`."""
        now = self.clock()
        args: list[str | int] = [to_us(now), to_us(now + duration), worker_id]
        for lease in leases:
            args += [lease.job_id, lease.token]
        lost, cancel = await self._run("extend", args)
        return LeaseRenewal(
            lost=frozenset(i.decode() for i in lost),
            cancel_requested=frozenset(i.decode() for i in cancel),
        )

    async def release(self, worker_id: str, releases: Sequence[Release]) -> list[bool]:
        """See :meth:`Backend.release`."""
        if not releases:
            return []
        now = str(to_us(self.clock()))
        args: list[str | bytes] = [now, secrets.token_hex(8), str(len(releases))]
        for item in releases:
            args += release_args(item)
        applied = await self._run("release", args)
        if any(item.outcome.kind in _BACK for item in releases):
            self._waiting.wake(None)
        return [bool(flag) for flag in applied]

    async def reap_expired(self) -> list[JobRecord]:
        """See :meth:`Backend.reap_expired`."""
        records: list[JobRecord] = []
        while True:
            now = self.clock()
            examined, *items = await self._run("reap", [to_us(now), _BATCH, _REAP_REASON])
            for item in items:
                try:
                    records.append(decode_job(unpack_record(item), now))
                except CorruptRecordError as exc:
                    logger.error("A reaped job cannot be read: %s", exc)
            if examined < _BATCH:
                break
        if records:
            self._waiting.wake(None)
        return records

    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        """See :meth:`Backend.wait_for_work`. Woken by pub/sub; no polling."""
        return await self._waiting.wait_for_work(queues, timeout)

    async def wait_for_jobs(
        self,
        worker_id: str,
        queues: Sequence[str],
        free: int,
        lease: timedelta,
        timeout: float,
    ) -> list[JobRecord]:
        """See :meth:`Backend.wait_for_jobs`. Enqueues hand their jobs to the waiting worker.

        The worker is registered as idle on its queues and blocks on a list of its own:
        an enqueue that finds it leases the job to it and pushes the record, which the
        server delivers at once (see :mod:`underway.backends._redis_waiting`).
        """
        return await self._waiting.wait_for_jobs(worker_id, queues, free, lease, timeout)

    async def set_progress(self, lease: Lease, progress: float, message: str | None) -> bool:
        """See :meth:`Backend.set_progress`."""
        check_progress(progress)
        args = [lease.job_id, str(lease.token), repr(float(progress)), opt(message)]
        return bool(await self._run("progress", args))

    async def register_worker(self, info: WorkerInfo) -> None:
        """See :meth:`Backend.register_worker`."""
        now = to_us(self.clock())

        async def register(client: aioredis.Redis) -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(self._key("workers"), info.id, encode_worker(info))
                pipe.zadd(self._key("heartbeats"), {info.id: now})
                await pipe.execute()

        await self._call("register_worker", register)

    async def unregister_worker(self, worker_id: str) -> None:
        """See :meth:`Backend.unregister_worker`."""

        async def unregister(client: aioredis.Redis) -> list[bytes]:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hdel(self._key("workers"), worker_id)
                pipe.zrem(self._key("heartbeats"), worker_id)
                pipe.delete(self._key("acquired", worker_id))
                await pipe.execute()
            # No more handoffs; what was handed and never taken goes back to its queue.
            (items,) = await self._evals(client, [("unidle", [worker_id])])
            await client.delete(self._key("handoff", worker_id))
            return list(items)

        items = await self._call("unregister_worker", unregister)
        await self._waiting.hand_back(worker_id, items)

    # -- schedules ------------------------------------------------------------------------

    async def claim_schedule_tick(
        self, schedule: str, tick: datetime, job: NewJob | None = None
    ) -> bool:
        """See :meth:`Backend.claim_schedule_tick`."""
        now = to_us(self.clock())
        args: list[str | bytes | int] = [now, schedule, to_us(tick), secrets.token_hex(8)]
        args += ["1", *new_job_args(job)] if job is not None else ["0"]
        won = bool(await self._run("claim", args))
        if won and job is not None:
            self._waiting.wake((job.queue,))
        return won

    async def last_schedule_tick(self, schedule: str) -> datetime | None:
        """See :meth:`Backend.last_schedule_tick`."""
        key = self._key("ticks")
        value = await self._call("last_schedule_tick", lambda client: client.hget(key, schedule))
        value = cast("bytes | None", value)
        return None if value is None else from_us(value.split(b" ", 1)[0])

    # -- operators ------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> JobRecord | None:
        """See :meth:`Backend.get_job`."""
        key = self._key("job", job_id)
        fields = cast(
            "dict[bytes, bytes]", await self._call("get_job", lambda client: client.hgetall(key))
        )
        return decode_job(fields, self.clock()) if fields else None

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
        filters = [opt(queue), opt(None if status is None else status.value), opt(task_name)]
        cursor: bytes | str = "+inf"
        skip = offset
        items: list[Any] = []
        while True:
            want = limit - len(items)
            reply = await self._run("list", [to_us(now), cursor, _BATCH, skip, want, *filters])
            cursor, skip, found = reply[0], reply[1], reply[2:]
            items += found
            if not cursor or len(items) >= limit:
                break
        records = []
        for item in items:
            try:
                records.append(decode_job(unpack_record(item), now))
            except CorruptRecordError as exc:
                logger.warning("Skipping a job that cannot be read: %s", exc)
        return records

    async def count_jobs(self) -> dict[str, dict[JobStatus, int]]:
        """See :meth:`Backend.count_jobs`."""
        flat = await self._run("count", [to_us(self.clock())])
        counts: dict[str, dict[JobStatus, int]] = {}
        for i in range(0, len(flat), 3):
            if flat[i + 2]:
                queue = flat[i].decode()
                counts.setdefault(queue, {})[JobStatus(flat[i + 1].decode())] = flat[i + 2]
        return counts

    async def list_workers(self) -> list[WorkerInfo]:
        """See :meth:`Backend.list_workers`."""

        async def read(client: aioredis.Redis) -> list[Any]:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hgetall(self._key("workers"))
                pipe.zrange(self._key("heartbeats"), 0, -1, withscores=True)
                return await pipe.execute()

        entries, heartbeats = await self._call("list_workers", read)
        beats = dict(heartbeats)
        workers = []
        for worker_id in sorted(entries):
            try:
                workers.append(decode_worker(worker_id, entries[worker_id], beats.get(worker_id)))
            except CorruptRecordError as exc:
                logger.warning("Skipping a worker entry that cannot be read: %s", exc)
        return workers

    async def prune_workers(self, older_than: timedelta) -> int:
        """See :meth:`Backend.prune_workers`."""
        removed: int = await self._run("prune", [to_us(self.clock() - older_than)])
        return removed

    async def _change(self, name: str, *args: str | int) -> JobRecord | None:
        now = self.clock()
        reply = await self._run(name, [to_us(now), *args])
        return None if reply is None else decode_job(unpack_record(reply), now)

    async def cancel(self, job_id: str) -> JobRecord | None:
        """See :meth:`Backend.cancel`."""
        return await self._change("cancel", job_id)

    async def mark_dead(self, job_id: str, reason: str) -> JobRecord | None:
        """See :meth:`Backend.mark_dead`."""
        return await self._change("mark_dead", job_id, reason)

    async def requeue(self, job_id: str) -> JobRecord | None:
        """See :meth:`Backend.requeue`."""
        record = await self._change("requeue", job_id)
        if record is not None and record.status is JobStatus.QUEUED:
            self._waiting.wake((record.queue,))
        return record

    async def purge(
        self, older_than: timedelta, statuses: Sequence[JobStatus] | None = None
    ) -> int:
        """See :meth:`Backend.purge`."""
        chosen = sorted(s.value for s in purge_statuses(statuses))
        cutoff = to_us(self.clock() - older_than)
        total = 0
        while True:
            deleted: int = await self._run("purge", [cutoff, _BATCH, *chosen])
            total += deleted
            if deleted < _BATCH:
                return total


def _record_id(item: Any) -> str:
    """The job id in a record reply that could not be decoded, as far as it can be read."""
    try:
        if isinstance(item, list):
            value = item[0] if item and isinstance(item[0], bytes) else b""
        else:
            value = unpack_record(item).get(b"id", b"")
        return value.decode(errors="replace")
    except CorruptRecordError:
        return ""


def _missing_script(reply: Any) -> bool:
    return isinstance(reply, rx.ResponseError) and str(reply).startswith("NOSCRIPT")
