"""How workers wait on Redis: handed jobs on a list of their own, or woken by pub/sub.

:meth:`Waiting.wait_for_jobs` is the worker's wait (see ``lua/lib.lua`` and ``idle.lua``):
registered as idle on its queues, the worker blocks on ``P:handoff:<worker>`` (``BLPOP``,
a connection per waiting worker), where an enqueue pushes the job it leased to it, and any
script that makes a job due pushes a wake. :meth:`Waiting.wait_for_work`, the contract's
plain wait, listens on the ``P:wake`` channel (one subscription per backend object).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from redis import exceptions as rx

from underway.backends import _redis_wire as wire
from underway.backends._redis_records import decode_job, from_us, to_us, unpack_record
from underway.errors import BackendError, CorruptRecordError
from underway.job import JobRecord, Outcome, Release

if TYPE_CHECKING:
    from underway.backends.redis import RedisBackend

__all__ = ["Waiting"]

logger = logging.getLogger("underway.backends.redis")

#: Seconds an idle worker's registration outlives its wait (clocks of machines differ a bit).
_IDLE_MARGIN = 1.0
_MICROSECOND = timedelta(microseconds=1)


class Waiting:
    """The waits of one :class:`~underway.backends.redis.RedisBackend` object."""

    def __init__(self, backend: RedisBackend) -> None:
        self._backend = backend
        self._blocking: dict[str, wire.Wire] = {}  # per waiting worker: its BLPOP connection
        self._waiters: dict[asyncio.Future[bool], frozenset[str]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._pubsub: Any = None  # the listener's subscription
        self._closing = False
        self._listening = asyncio.Event()

    def _is_closing(self) -> bool:  # (a method: mypy would take the attribute as constant)
        return self._closing

    def reopen(self) -> None:
        """The backend opened (again)."""
        self._closing = False

    async def close(self) -> None:
        """Wake every waiter, stop the subscription and close the blocking connections."""
        self.wake(None, False)
        self._closing = True
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await self._stop_listener(listener)
        blocking, self._blocking = self._blocking, {}
        for connection in blocking.values():
            connection.close()

    def wake(self, queues: Iterable[str] | None, value: bool = True) -> None:
        """Wake this process's ``wait_for_work`` callers on these queues (all: ``None``)."""
        wanted = None if queues is None else frozenset(queues)
        for waiter, waiting_on in self._waiters.items():
            if not waiter.done() and (wanted is None or waiting_on & wanted):
                waiter.set_result(value)

    async def _stop_listener(self, listener: asyncio.Task[None]) -> None:
        """Wait for the cancelled wake-up listener to end.

        redis-py can miss the cancellation of a subscription's blocking read (seen right
        after a server restart), and the listener would wait for a message forever: close
        its connection under it.
        """
        done, _ = await asyncio.wait({listener}, timeout=1.0)
        pubsub = self._pubsub
        if not done and pubsub is not None and pubsub.connection is not None:
            await pubsub.connection.disconnect(nowait=True)
            listener.cancel()
            done, _ = await asyncio.wait({listener}, timeout=1.0)
        if not done:
            logger.warning(
                "Redis at %s: the wake-up subscription did not close.", self._backend.where
            )

    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        """:meth:`Backend.wait_for_work`: woken by pub/sub; no polling."""
        if self._backend._client is None:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="underway-redis-wake")
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters[waiter] = frozenset(queues)
        try:
            if not self._listening.is_set():
                # Subscribed before looking, so that no enqueue falls between the two. The
                # subscription (or close) resolves the waiter too.
                listening: asyncio.Future[bool] = asyncio.ensure_future(self._listening.wait())
                await asyncio.wait(
                    [listening, waiter], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                listening.cancel()
                if not waiter.done() and not self._listening.is_set():
                    return False
                if waiter.done():
                    return waiter.result()
            try:
                due = await self._backend._run("probe", [to_us(self._backend.clock()), *queues])
            except BackendError as exc:
                logger.debug("Redis at %s: could not look for work: %s", self._backend.where, exc)
                due = 0
            if due == 1:
                return True
            wait = deadline - loop.time()
            capped = False
            if isinstance(due, bytes):
                until_due = (from_us(due) - self._backend.clock()).total_seconds()
                capped = until_due < wait
                wait = min(wait, until_due)
            try:
                return await asyncio.wait_for(waiter, max(wait, 0.0))
            except asyncio.TimeoutError:
                return capped
        finally:
            del self._waiters[waiter]

    async def wait_for_jobs(
        self,
        worker_id: str,
        queues: Sequence[str],
        free: int,
        lease: timedelta,
        timeout: float,
    ) -> list[JobRecord]:
        """:meth:`Backend.wait_for_jobs`: enqueues hand their jobs to the waiting worker.

        The worker is registered as idle on its queues (``P:idle:<queue>``) until its wait
        ends, and blocks on its own list (``BLPOP P:handoff:<worker>``, on a connection of
        its own): an enqueue that finds it there leases the job to it and pushes the record,
        which the server delivers at once, and any script that makes a job due pushes a
        wake. No polling, and no round trip between the enqueue and the job's start.
        """
        pool = self._backend._pool
        if pool is None or not wire.AVAILABLE or free < 1:
            await self.wait_for_work(queues, timeout)  # the contract's default
            return []
        now = self._backend.clock()
        ends = now + timedelta(seconds=timeout + _IDLE_MARGIN)
        head: list[str | int] = [to_us(now), worker_id, free, lease // _MICROSECOND, to_us(ends)]
        try:
            due = await self._backend._run("idle", [*head, *queues])
        except asyncio.CancelledError:  # registered, maybe: undo it, take back what came
            await asyncio.shield(self._stop_waiting(worker_id, None, None))
            raise
        except BackendError as exc:  # the acquire that follows meets it and reports it
            logger.debug("Redis at %s: could not wait for work: %s", self._backend.where, exc)
            return []
        wait = timeout
        if isinstance(due, bytes):
            wait = min(wait, (from_us(due) - self._backend.clock()).total_seconds())
        if due == 1 or wait <= 0:
            return []
        blocking = self._blocking.get(worker_id)
        if blocking is None:
            blocking = wire.Wire(pool.connection_class(**pool.connection_kwargs))
            self._blocking[worker_id] = blocking
        key = self._backend._key("handoff", worker_id)
        try:
            pop = await blocking.send_blocking(wait, "BLPOP", key, f"{wait:.3f}")
        except asyncio.CancelledError:  # while connecting: nothing was asked yet
            await asyncio.shield(self._stop_waiting(worker_id, blocking, None))
            raise
        except (rx.RedisError, OSError) as exc:
            return await self._wait_without_handoff(worker_id, queues, wait, exc)
        try:
            reply = await pop  # no task in between: the job starts sooner
        except asyncio.CancelledError:
            await asyncio.shield(self._stop_waiting(worker_id, blocking, pop))
            raise
        except (rx.RedisError, OSError) as exc:
            return await self._wait_without_handoff(worker_id, queues, wait, exc)
        return self._handed(worker_id, [reply[1]] if reply else [])

    async def _wait_without_handoff(
        self, worker_id: str, queues: Sequence[str], wait: float, exc: Exception
    ) -> list[JobRecord]:
        """The blocking read failed: stop handoffs, return what came, else just wait."""
        logger.debug("Redis at %s: waiting for handed jobs failed: %s", self._backend.where, exc)
        try:
            records = self._handed(worker_id, await self._backend._run("unidle", [worker_id]))
        except BackendError:
            return []  # the server is away: the acquire that follows says so
        if records:
            return records
        await self.wait_for_work(queues, wait)
        return []

    async def _stop_waiting(
        self, worker_id: str, blocking: wire.Wire | None, pop: asyncio.Future[Any] | None
    ) -> None:
        """End a wait early: no more handoffs, and the jobs handed over go back."""
        items: list[bytes] = []
        try:
            items += await self._backend._run("unidle", [worker_id])  # it also wakes the BLPOP
            reply = None
            if blocking is not None and pop is not None:
                reply = await blocking.late_reply(pop, 2.0)
            if reply:
                items.append(reply[1])
        except (BackendError, rx.RedisError, OSError, asyncio.TimeoutError) as exc:
            # Jobs handed over meanwhile stay leased to this worker until their leases expire.
            logger.warning(
                "Redis at %s: could not stop waiting cleanly: %r", self._backend.where, exc
            )
            if blocking is not None:
                if self._blocking.get(worker_id) is blocking:
                    del self._blocking[worker_id]
                blocking.close()  # its BLPOP may still be under way
        await self.hand_back(worker_id, items)

    async def hand_back(self, worker_id: str, items: Sequence[bytes]) -> None:
        """Put the jobs in items handed to a worker that will not run them back in their queue."""
        records = self._handed(worker_id, items)
        if records:
            back = [Release(record.lease, Outcome.requeue()) for record in records]
            try:
                await self._backend.release(worker_id, back)
            except BackendError as exc:
                logger.warning(
                    "Redis at %s: %d job(s) handed to worker %s go back to their queue when "
                    "their leases expire: %s",
                    self._backend.where,
                    len(back),
                    worker_id,
                    exc,
                )

    def _handed(self, worker_id: str, items: Sequence[bytes]) -> list[JobRecord]:
        """The jobs in items pushed to a waiting worker (``token record``; ``""``: a wake)."""
        now = self._backend.clock()
        records = []
        for item in items:
            if not item:
                continue
            _, _, packed = item.partition(b" ")
            try:
                records.append(decode_job(unpack_record(packed), now))
            except CorruptRecordError as exc:  # its lease expires and a reaper recovers it
                logger.error("A job handed to worker %s cannot be read: %s", worker_id, exc)
        return records

    async def _listen(self) -> None:
        """Keep a subscription to the wake channel, and wake the waiters it names."""
        assert self._backend._client is not None
        channel = self._backend._key("wake")
        delay, failing = 0.05, False
        while self._backend._client is not None and not self._is_closing():
            pubsub = self._pubsub = self._backend._client.pubsub()
            try:
                await pubsub.subscribe(channel)
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self._listening.set()
                        if failing:
                            logger.info(
                                "Redis at %s: listening for work again.", self._backend.where
                            )
                            self.wake(None)  # a notification may have passed while away
                        delay, failing = 0.05, False
                    elif message["type"] == "message":
                        self.wake((message["data"].decode(),))
            except (rx.RedisError, OSError) as exc:
                self._listening.clear()
                if self._is_closing():
                    return
                if not failing:
                    logger.warning(
                        "Redis at %s: lost the subscription that wakes idle workers (%s); "
                        "reconnecting.",
                        self._backend.where,
                        exc,
                    )
                failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            finally:
                self._listening.clear()
                await pubsub.aclose()  # type: ignore[no-untyped-call]
