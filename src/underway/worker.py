"""The worker: takes jobs from the store, runs them, and records how they ended.

Delivery is at-least-once. A worker leases each job it takes and renews the leases by
heartbeat; a job is acknowledged (released with its outcome) only after its function has
returned. If the worker dies, its leases expire and any worker's reaper puts the jobs back
in the queue, so they run again within about one lease period.

How a job's function runs (event loop, thread or process, time limit, retries) is
:mod:`underway.execution`'s; this module takes jobs, keeps their leases and stores how
they ended.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
import os
import secrets
import signal
import socket
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from underway.backends.base import Backend
from underway.errors import BackendError
from underway.execution import JobRunner
from underway.job import JobRecord, Outcome, Release, WorkerInfo, as_timedelta
from underway.schedules import Scheduler

if TYPE_CHECKING:
    from underway.app import Underway

__all__ = ["Worker"]

logger = logging.getLogger("underway.worker")
UTC = timezone.utc

DEFAULT_LEASE = 10.0
DEFAULT_GRACE = 30.0
#: Seconds between deletions of finished jobs older than the app's result TTL.
PURGE_EVERY = 60.0
#: Seconds a job leased ahead of a free slot may wait for one before it is handed back.
PREFETCH_HOLD = 0.1
#: The weight of the newest sample in the running averages of job and exchange times.
_SMOOTHING = 0.1


def _cancel(future: asyncio.Future[Any], _: object) -> None:
    future.cancel()


def _average(average: float, sample: float) -> float:
    """An exponentially weighted running average (the first sample starts it)."""
    if math.isinf(average):
        return sample
    return average + _SMOOTHING * (sample - average)


class Worker:
    """Runs the jobs of an :class:`~underway.app.Underway` app.

    Args:
        app: The app whose tasks this worker runs.
        queues: The queues to take jobs from; default: every queue a registered task uses.
        concurrency: How many jobs run at once.
        lease: How long a job stays leased without a heartbeat; a crashed worker's jobs
            run again about this long after the crash.
        heartbeat: How often leases are renewed and expired ones reaped; default a quarter
            of ``lease``.
        grace: On shutdown, how long running jobs get to finish before they are handed
            back to the queue.
        poll: How long an idle worker waits before looking for work again when the store
            sends no notification.
        schedules: Whether this worker also claims the ticks of the app's schedules.
        threads: Size of the thread pool for plain-function tasks (default: concurrency).
        processes: Size of the process pool for ``process=True`` tasks (default: CPUs).
        worker_id: A unique id; default ``hostname:pid:random``.
        purge_every: Seconds between deletions of finished jobs older than the app's
            ``result_ttl``.
        prefetch: While jobs finish faster than a round trip to the store, lease up to
            ``2 * concurrency`` jobs ahead of free slots, with two round trips under way,
            so that the next jobs are at hand when slots free. A job leased ahead waits at
            most ``PREFETCH_HOLD`` (0.1 s) for a slot, then goes back to its queue, its
            attempt not counted; at most ``concurrency`` jobs run at once.
    """

    def __init__(
        self,
        app: Underway,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 10,
        lease: float | timedelta = DEFAULT_LEASE,
        heartbeat: float | timedelta | None = None,
        grace: float = DEFAULT_GRACE,
        poll: float = 1.0,
        schedules: bool = True,
        threads: int | None = None,
        processes: int | None = None,
        worker_id: str | None = None,
        purge_every: float = PURGE_EVERY,
        prefetch: bool = True,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, not {concurrency!r}.")
        if isinstance(queues, str):
            raise TypeError(f"queues must be a list of queue names, e.g. [{queues!r}].")
        self.app = app
        self.queues = tuple(queues) if queues else self._default_queues(app)
        self.concurrency = concurrency
        self.lease = as_timedelta(lease, "lease")
        self.heartbeat = as_timedelta(heartbeat, "heartbeat") if heartbeat else self.lease / 4
        if self.heartbeat >= self.lease:
            # Every lease would expire between two renewals: jobs would be reaped while
            # they run, run again elsewhere, and their results refused.
            raise ValueError(
                f"heartbeat must be shorter than the lease (a quarter of it is the default), "
                f"got heartbeat={self.heartbeat.total_seconds():g} s for a lease of "
                f"{self.lease.total_seconds():g} s."
            )
        self.grace = grace
        self.poll = poll
        self.run_schedules = schedules
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.purge_every = purge_every
        self.prefetch = prefetch
        self.counts: Counter[str] = Counter()
        self._running: dict[str, tuple[JobRecord, asyncio.Task[None]]] = {}
        self._why_cancelled: dict[str, str] = {}
        self._outbox: list[Release] = []
        self._releasing: list[list[Release]] = []  # the batches release calls are storing
        self._outbox_ready = asyncio.Event()
        self._acquirer_waiter: asyncio.Future[None] | None = None
        #: Jobs leased ahead of a free slot, with the event loop's time they arrived.
        self._ready: collections.deque[tuple[JobRecord, float]] = collections.deque()
        self._job_time = math.inf  # how long a job runs, on average (seconds)
        self._round_trip = 0.0  # how long an exchange takes, on average
        self._stopping = asyncio.Event()
        self._forced = asyncio.Event()
        self._started = asyncio.Event()
        self._closing = False
        self._runner = JobRunner(
            app,
            threads=threads or concurrency,
            processes=processes,
            counts=self.counts,
            why_cancelled=self._why_cancelled,
        )

    @staticmethod
    def _default_queues(app: Underway) -> tuple[str, ...]:
        queues = {task.queue for task in app.tasks.values()} | {"default"}
        return tuple(sorted(queues))

    # -- control --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop gracefully: take no new jobs, let running ones finish within the grace."""
        self._stopping.set()

    def kill(self) -> None:
        """Stop at once: running jobs are interrupted and handed back to the queue."""
        self._stopping.set()
        self._forced.set()

    async def started(self) -> None:
        """Wait until the worker has registered and begun taking jobs."""
        await self._started.wait()

    @property
    def in_flight(self) -> int:
        """How many jobs this worker is running now."""
        return len(self._running)

    @property
    def abandoned(self) -> int:
        """How many task functions still run in threads or processes for nothing.

        A plain function cannot be interrupted: when its job times out, is cancelled or is
        handed back at shutdown, its thread runs on until the function returns. Python
        waits for such threads before it exits, so the ``underway worker`` command exits
        without waiting when this is not zero after :meth:`run` has returned.
        """
        return self._runner.abandoned

    async def run(self, *, handle_signals: bool = False) -> None:
        """Run until :meth:`stop` (or, with ``handle_signals``, SIGINT/SIGTERM).

        With ``handle_signals``, the first signal stops gracefully and a second one at once.
        """
        backend = self._runner.backend = await self.app.backend()
        event_loop = asyncio.get_running_loop()
        installed = self._install_signals(event_loop) if handle_signals else []
        await backend.register_worker(
            WorkerInfo(
                id=self.id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                queues=self.queues,
                concurrency=self.concurrency,
                started_at=datetime.now(UTC),
            )
        )
        helpers = [
            asyncio.create_task(self._heartbeat_loop(backend), name="underway-heartbeat"),
        ]
        if self.run_schedules:
            for schedule in self.app.schedules.values():
                scheduler = Scheduler(self.app, backend, schedule)
                helpers.append(
                    asyncio.create_task(
                        self._guard(scheduler.run(self._stopping), f"schedule {schedule.name}"),
                        name=f"underway-schedule:{schedule.name}",
                    )
                )
        logger.info(
            "Worker %s started: queues %s, concurrency %d, %d task(s), %d schedule(s).",
            self.id,
            ",".join(self.queues),
            self.concurrency,
            len(self.app.tasks),
            len(self.app.schedules) if self.run_schedules else 0,
        )
        self._started.set()
        # While the worker takes jobs, its acquire loop also stores their outcomes (with
        # the next acquire, in one round trip); once it stops, the flusher stores the
        # outcomes of the jobs still finishing.
        flusher: asyncio.Task[None] | None = None
        try:
            await self._acquire_loop(backend)
            flusher = asyncio.create_task(self._flush_loop(backend), name="underway-release")
            await self._drain()
        finally:
            for helper in helpers[1:]:
                helper.cancel()
            heartbeat = helpers[0]
            heartbeat.cancel()
            await asyncio.gather(*helpers[1:], heartbeat, return_exceptions=True)
            # Never cancel the flusher: cancelled in the middle of a release, it would drop
            # the batch it holds (the write may not have started), and those jobs would stay
            # running until their leases expired, then run again. Let it finish and return.
            self._closing = True
            self._outbox_ready.set()
            if flusher is not None:
                await asyncio.gather(flusher, return_exceptions=True)
            await self._flush(backend)
            try:
                await backend.unregister_worker(self.id)
            except BackendError:
                logger.exception("Worker %s could not unregister.", self.id)
            for sig in installed:
                event_loop.remove_signal_handler(sig)
            self._runner.shutdown()
            logger.info("Worker %s stopped: %s.", self.id, dict(self.counts) or "no jobs")

    def _install_signals(self, event_loop: asyncio.AbstractEventLoop) -> list[signal.Signals]:
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                event_loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            installed.append(sig)
        return installed

    def _on_signal(self, sig: signal.Signals) -> None:
        if not self._stopping.is_set():
            logger.warning(
                "Received %s: taking no new jobs; %d running job(s) get %.0f s to finish. "
                "Send it again to stop at once.",
                sig.name,
                len(self._running),
                self.grace,
            )
            self.stop()
        else:
            logger.warning(
                "Received %s again: handing %d job(s) back and stopping now.",
                sig.name,
                len(self._running),
            )
            self.kill()

    # -- taking jobs ----------------------------------------------------------------------

    async def _acquire_loop(self, backend: Backend) -> None:
        """Keep the slots filled, and the store busy while jobs run.

        An exchange stores the outcomes waiting and leases jobs for the free slots. While
        jobs finish faster than an exchange takes (no-op and other short jobs), the worker
        leases up to ``2 * concurrency`` jobs ahead of free slots, with two exchanges under
        way: the store works on the next one while this process runs the jobs of the last,
        instead of the two taking turns. Otherwise one exchange is under way at a time.
        """
        stop_wait = asyncio.ensure_future(self._stopping.wait())
        stop_wait.add_done_callback(self._wake_acquirer)
        loop = asyncio.get_running_loop()
        exchanges: dict[asyncio.Task[list[JobRecord]], tuple[int, float]] = {}  # ask, sent
        exhausted = False  # the last exchange found fewer jobs than it asked for
        pause: float | None = None  # after a store failure, the wait before the next try
        try:
            while not self._stopping.is_set():
                now = loop.time()
                for done in [exchange for exchange in exchanges if exchange.done()]:
                    limit, sent_at = exchanges.pop(done)
                    try:
                        records = done.result()
                    except Exception:  # any store failure must not end the worker
                        logger.exception("Worker %s could not acquire jobs; retrying.", self.id)
                        pause = self.poll
                        continue
                    self._round_trip = _average(self._round_trip, now - sent_at)
                    exhausted = len(records) < limit
                    self._ready.extend((record, now) for record in records)
                self._hand_back_stale(now)
                if pause is not None:
                    if not exchanges:
                        await asyncio.wait([stop_wait], timeout=pause)
                        pause = None
                        continue
                else:
                    want = self._wanted() - sum(limit for limit, _ in exchanges.values())
                    room = not exchanges or (len(exchanges) < 2 and self._prefetching())
                    if want > 0 and room and not exhausted:
                        limit = min(want, self.concurrency)
                        exchange = asyncio.ensure_future(self._exchange(backend, limit))
                        exchange.add_done_callback(self._wake_acquirer)
                        exchanges[exchange] = (limit, now)
                # Started after the exchange is created, so that it is sent before they run.
                self._start_ready()
                if self._stopping.is_set():
                    break  # before the jobs just started take their first step
                if not exchanges and exhausted and not self._ready:
                    handed = await self._idle(backend, stop_wait)
                    self._ready.extend((record, loop.time()) for record in handed)
                    self._start_ready()  # at once: the next exchange takes the rest along
                    exhausted = False
                    continue
                # Every job that ends frees a slot first, so its outcome waits here at most
                # until the next exchange, which takes it along.
                deadline = self._ready[0][1] + PREFETCH_HOLD if self._ready else None
                await self._acquirer_wait(deadline)
        finally:
            stop_wait.cancel()
            # Never abandon an exchange under way: the jobs it leased would wait for their
            # leases to expire. Whatever was leased and has not started goes back now.
            for exchange in exchanges:
                with contextlib.suppress(Exception):
                    self._ready.extend((record, 0.0) for record in await exchange)
            self._hand_back_stale(math.inf)

    def _prefetching(self) -> bool:
        """Whether to lease ahead of free slots: jobs finish faster than an exchange takes."""
        return self.prefetch and self._job_time < self._round_trip

    def _wanted(self) -> int:
        """How many jobs to hold now: the free slots, and twice as many ahead when prefetching."""
        ahead = 2 * self.concurrency if self._prefetching() else 0
        return self.concurrency + ahead - len(self._running) - len(self._ready)

    def _start_ready(self) -> None:
        # Once stopping, the acquire loop hands back the jobs that have not started.
        while self._ready and len(self._running) < self.concurrency and not self._stopping.is_set():
            record, _ = self._ready.popleft()
            self._start_job(record)

    def _hand_back_stale(self, now: float) -> None:
        """Hand back jobs leased ahead that waited for a slot longer than a moment."""
        while self._ready and now - self._ready[0][1] > PREFETCH_HOLD:
            record, _ = self._ready.popleft()
            self.counts["handed back"] += 1
            self._queue_release(record, Outcome.requeue())

    def _wake_acquirer(self, _: object = None) -> None:
        waiter = self._acquirer_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _acquirer_wait(self, deadline: float | None) -> None:
        """Wait for a slot to free, the exchange to end, the stop, or the ``deadline``."""
        loop = asyncio.get_running_loop()
        waiter = self._acquirer_waiter = loop.create_future()
        timer = None if deadline is None else loop.call_at(deadline, self._wake_acquirer)
        try:
            await waiter
        finally:
            self._acquirer_waiter = None
            if timer is not None:
                timer.cancel()

    async def _exchange(self, backend: Backend, free: int) -> list[JobRecord]:
        """Store the outcomes waiting, if any, and lease up to ``free`` jobs: one round trip."""
        batch = self._take_outbox()
        if not batch:
            return await backend.acquire(self.queues, self.id, free, self.lease)
        try:
            applied, records = await backend.release_and_acquire(
                self.id, batch, self.queues, free, self.lease
            )
        except BaseException:
            self._outbox[:0] = batch  # keep every outcome: nothing acknowledged is lost
            raise
        finally:
            self._releasing = [b for b in self._releasing if b is not batch]
        self._report_refused(batch, applied)
        return records

    async def _idle(self, backend: Backend, stop_wait: asyncio.Future[Any]) -> list[JobRecord]:
        """Wait for work (or the stop); store the outcomes of jobs that end meanwhile.

        Returns the jobs the store handed over while waiting (leased to this worker). The
        wait is awaited directly, so that a job handed over starts one step sooner; the
        stop cancels it, and the wait hands back what it was handed and did not return.
        """
        free = self.concurrency - len(self._running)
        waiter = asyncio.ensure_future(
            backend.wait_for_jobs(self.id, self.queues, free, self.lease, self.poll)
        )
        interrupt = functools.partial(_cancel, waiter)
        stop_wait.add_done_callback(interrupt)
        releaser = asyncio.ensure_future(self._release_while(backend, waiter))
        try:
            return await waiter
        except asyncio.CancelledError:
            this = asyncio.current_task()
            cancelling = getattr(this, "cancelling", None)  # Python 3.11+
            if not (waiter.cancelled() and self._stopping.is_set()) or (
                cancelling is not None and cancelling()
            ):
                raise  # this worker itself is cancelled, not only its wait
            return []
        except Exception as exc:  # the next acquire meets it too, and reports it
            logger.debug("Worker %s: waiting for work failed: %r", self.id, exc)
            return []
        finally:
            stop_wait.remove_done_callback(interrupt)
            if not waiter.done():
                waiter.cancel()
                await asyncio.gather(waiter, return_exceptions=True)
            await releaser  # never cut short: a release under way completes or puts back

    async def _release_while(self, backend: Backend, waiter: asyncio.Future[Any]) -> None:
        """Store the outcomes of jobs that end while the worker waits for work."""
        delay = 0.05
        while not waiter.done():
            pause: float | None = None
            if self._outbox:
                self._outbox_ready.clear()
                if await self._release_outbox(backend, delay):
                    delay = 0.05
                else:  # the store failed: try again after a pause
                    pause, delay = delay, min(delay * 2, 5.0)
                if waiter.done():
                    return
            ready = asyncio.ensure_future(self._outbox_ready.wait())
            await asyncio.wait([waiter, ready], timeout=pause, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()

    def _take_outbox(self) -> list[Release]:
        batch, self._outbox = self._outbox, []
        if batch:
            self._releasing.append(batch)
        return batch

    def _report_refused(self, batch: Sequence[Release], applied: Sequence[bool]) -> None:
        for release, ok in zip(batch, applied, strict=True):
            if not ok:
                logger.warning(
                    "The outcome of job %s was not recorded: its lease was lost (it ran "
                    "too long without a heartbeat); the job runs again.",
                    release.lease.job_id,
                )

    def _start_job(self, record: JobRecord) -> None:
        task = asyncio.create_task(self._run_job(record), name=f"underway-job:{record.id}")
        self._running[record.id] = (record, task)
        task.add_done_callback(functools.partial(self._job_done, record))

    async def _drain(self) -> None:
        tasks = [task for _, task in self._running.values()]
        if tasks and not self._forced.is_set():
            forced = asyncio.ensure_future(self._forced.wait())
            deadline = asyncio.ensure_future(asyncio.wait(tasks, timeout=self.grace))
            await asyncio.wait([forced, deadline], return_when=asyncio.FIRST_COMPLETED)
            forced.cancel()
            deadline.cancel()
        left = list(self._running.items())
        if left:
            logger.warning(
                "Handing %d unfinished job(s) back to the queue: %s.",
                len(left),
                ", ".join(f"{r.task_name}[{jid}]" for jid, (r, _) in left),
            )
        for job_id, (_, task) in left:
            self._why_cancelled[job_id] = "shutdown"
            task.cancel()
        await asyncio.gather(*(task for _, (_, task) in left), return_exceptions=True)

    # -- running one job ------------------------------------------------------------------

    async def _run_job(self, record: JobRecord) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            outcome = await self._runner.execute(record)
        finally:
            self._running.pop(record.id, None)
            self._job_time = _average(self._job_time, loop.time() - began)
            self._start_ready()
            self._wake_acquirer()
        self._queue_release(record, outcome)

    def _queue_release(self, record: JobRecord, outcome: Outcome | None) -> None:
        if outcome is not None:
            self._outbox.append(Release(record.lease, outcome))
            self._outbox_ready.set()

    def _job_done(self, record: JobRecord, task: asyncio.Task[None]) -> None:
        entry = self._running.get(record.id)
        if entry is None or entry[1] is not task:
            return  # _run_job ran and cleaned up after itself
        # Cancelled before its first step (a kill right after an acquire that took every
        # free slot): no line of _run_job ran. Without this the job would stay leased
        # until its lease expired, and lose an attempt.
        self._running.pop(record.id, None)
        self._start_ready()
        self._wake_acquirer()
        why = self._why_cancelled.pop(record.id, None)
        if why is not None:
            self._queue_release(record, self._runner.interrupted(record, why))

    # -- background duties ----------------------------------------------------------------

    async def _heartbeat_loop(self, backend: Backend) -> None:
        interval = self.heartbeat.total_seconds()
        event_loop = asyncio.get_running_loop()
        next_purge = event_loop.time()
        while True:
            await asyncio.sleep(interval)
            try:
                if self.app.result_ttl is not None and event_loop.time() >= next_purge:
                    next_purge = event_loop.time() + self.purge_every
                    purged = await backend.purge(self.app.result_ttl)
                    if purged:
                        logger.info(
                            "Deleted %d finished job(s) older than the result TTL (%s).",
                            purged,
                            self.app.result_ttl,
                        )
                # Finished jobs whose outcome is not stored yet stay leased too: if the store
                # refuses writes for a while, a reaper (this worker's own included) must
                # not recover a job that has already run, and run it again.
                waiting = [*(r for batch in self._releasing for r in batch), *self._outbox]
                leases = [record.lease for record, _ in self._running.values()]
                leases += [record.lease for record, _ in self._ready]
                leases += [release.lease for release in waiting]
                renewal = await backend.extend_leases(self.id, leases, self.lease)
                for job_id in renewal.lost:
                    self._interrupt(job_id, "lost")
                for job_id in renewal.cancel_requested:
                    self._interrupt(job_id, "cancel")
                reaped = await backend.reap_expired()
                if reaped:
                    logger.warning(
                        "Recovered %d job(s) whose worker stopped heartbeating: %s.",
                        len(reaped),
                        ", ".join(r.id for r in reaped[:10]),
                    )
            except Exception:
                logger.exception("Worker %s heartbeat failed; will retry.", self.id)

    def _interrupt(self, job_id: str, why: str) -> None:
        entry = self._running.get(job_id)
        if entry is None or job_id in self._why_cancelled:
            return
        record, task = entry
        if why == "lost":
            logger.warning(
                "Worker %s lost the lease of job %s of task %r; stopping it without "
                "recording a result (it runs again elsewhere).",
                self.id,
                job_id,
                record.task_name,
            )
        self._why_cancelled[job_id] = why
        task.cancel()

    async def _flush_loop(self, backend: Backend) -> None:
        while not self._closing:
            if not self._outbox:
                await self._outbox_ready.wait()
            self._outbox_ready.clear()
            await self._flush(backend)

    async def _flush(self, backend: Backend) -> None:
        """Store every outcome waiting, retrying with backoff while the store fails."""
        delay = 0.05
        while self._outbox:
            if not await self._release_outbox(backend, delay):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _release_outbox(self, backend: Backend, retry_in: float) -> bool:
        """Store the outcomes waiting, once; on failure keep them and return ``False``."""
        batch = self._take_outbox()
        try:
            try:
                applied = await backend.release(self.id, batch)
            finally:
                self._releasing = [b for b in self._releasing if b is not batch]
        except BaseException as exc:
            self._outbox[:0] = batch  # keep every outcome: nothing acknowledged is lost
            if not isinstance(exc, Exception):
                raise  # cancelled: the outcomes wait for the final flush
            logger.exception(
                "Worker %s could not record %d outcome(s); retrying in %.1f s.",
                self.id,
                len(batch),
                retry_in,
            )
            return False
        self._report_refused(batch, applied)
        return True

    async def _guard(self, coro: Any, what: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Worker %s: %s failed and stopped.", self.id, what)
