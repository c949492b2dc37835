"""How a worker runs one job: its function where its task says, and how the run ended.

Async tasks run on the event loop, plain functions in a thread pool, and tasks registered
with ``process=True`` in a process pool (spawned). A run that raises is retried with
backoff until its attempts are used up; one past its task's time limit is stopped; one the
worker cancelled (a cancel request, a lost lease, a shutdown) reports what the worker
decided. Everything here logs as the worker does, to ``underway.worker``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import importlib
import logging
import multiprocessing
import traceback
from collections import Counter
from collections.abc import Awaitable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from underway.backends.base import Backend
from underway.context import JobContext, reset_current_job, set_current_job
from underway.errors import BackendError, DeserializationError, UnderwayError
from underway.job import JobRecord, Lease, Outcome

if TYPE_CHECKING:
    from underway.app import Underway
    from underway.task import Task

__all__ = ["JobRunner"]

logger = logging.getLogger("underway.worker")
UTC = timezone.utc

#: How early the event loop may fire a timer (its clock resolution, generously).
_CLOCK_SLACK = 0.001


class _TimedOut(Exception):
    """A run reached its task's time limit (unlike a TimeoutError the task raised)."""


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    """Stop a process pool's processes now, abandoning the calls they run."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    processes: dict[int, Any] = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        process.terminate()


def _call_in_process(
    module: str, qualname: str, args: Sequence[Any], kwargs: dict[str, Any]
) -> Any:
    """Run a ``process=True`` task's function in a pool process, found by its import path."""
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    fn = getattr(target, "fn", target)  # the module attribute is the Task wrapping it
    return fn(*args, **kwargs)


class JobRunner:
    """Runs jobs' functions for a worker, and turns each run's ending into an outcome.

    Args:
        app: The app whose tasks it runs.
        threads: Size of the thread pool for plain-function tasks.
        processes: Size of the process pool for ``process=True`` tasks (default: CPUs).
        counts: The worker's counters, which it adds to (succeeded, failed, retried...).
        why_cancelled: Why the worker cancelled a job's run, by job id, taken on the run's
            cancellation: ``"cancel"``, ``"lost"`` or ``"shutdown"``.
    """

    def __init__(
        self,
        app: Underway,
        *,
        threads: int,
        processes: int | None,
        counts: Counter[str],
        why_cancelled: dict[str, str],
    ) -> None:
        self.app = app
        self.counts = counts
        self.why_cancelled = why_cancelled
        #: The store, once the worker has opened it (its clock, and progress reports).
        self.backend: Backend | None = None
        self._threads_size = threads
        self._processes_size = processes
        self._threads: ThreadPoolExecutor | None = None
        self._processes: ProcessPoolExecutor | None = None
        self._calls: set[concurrent.futures.Future[Any]] = set()

    @property
    def abandoned(self) -> int:
        """How many functions still run in threads or processes for runs that ended."""
        return sum(1 for future in list(self._calls) if not future.done())

    def shutdown(self) -> None:
        """Stop the pools: threads are left to finish, processes of abandoned runs end."""
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
        if self._processes is not None:
            if self.abandoned:
                _terminate_workers(self._processes)  # their jobs were handed back
            self._processes.shutdown(wait=False, cancel_futures=True)

    async def execute(self, record: JobRecord) -> Outcome | None:
        """Run the job's function; return how the run ended (``None``: report nothing)."""
        task = self.app.tasks.get(record.task_name)
        if task is None:
            reason = (
                f"unknown task {record.task_name!r}: no task of that name is registered in "
                f"the app this worker runs ({len(self.app.tasks)} known)"
            )
            logger.error("Job %s is dead: %s.", record.id, reason)
            self.counts["dead"] += 1
            return Outcome.dead(reason)
        try:
            args, kwargs = self.app.serializer.loads_call(record.payload)
        except DeserializationError as exc:
            reason = f"cannot decode the job's arguments: {exc}"
            logger.error("Job %s of task %r is dead: %s.", record.id, task.name, reason)
            self.counts["dead"] += 1
            return Outcome.dead(reason)
        context = JobContext(
            id=record.id,
            task_name=task.name,
            attempt=record.attempts,
            max_attempts=record.max_attempts,
            _report=functools.partial(self._report_progress, record.lease),
            _loop=asyncio.get_running_loop(),
        )
        token = set_current_job(context)
        try:
            result = await self._invoke(task, args, kwargs)
        except asyncio.CancelledError:
            why = self.why_cancelled.pop(record.id, None)
            if why is None:
                raise  # not cancelled by this worker: the worker itself is cancelled
            return self.interrupted(record, why)
        except _TimedOut:
            error = (
                f"TimeoutError: task {task.name!r} ran longer than its timeout of {task.timeout}"
            )
            return self._failed(task, record, error, None)
        except Exception as exc:
            return self._failed(
                task, record, f"{type(exc).__name__}: {exc}", traceback.format_exc()
            )
        finally:
            reset_current_job(token)
        try:
            data = self.app.serializer.dumps_result(task.name, result)
        except UnderwayError as exc:
            self.counts["failed"] += 1
            logger.error(
                "Job %s of task %r returned a value that cannot be stored: %s",
                record.id,
                task.name,
                exc,
            )
            return Outcome.failure(f"{type(exc).__name__}: {exc}", traceback.format_exc())
        self.counts["succeeded"] += 1
        return Outcome.success(data)

    def interrupted(self, record: JobRecord, why: str) -> Outcome | None:
        """The outcome of a run this worker cancelled (``None``: report nothing)."""
        if why == "cancel":
            logger.info("Job %s of task %r cancelled while running.", record.id, record.task_name)
            self.counts["cancelled"] += 1
            return Outcome.cancelled("cancelled while running")
        if why == "lost":
            return None
        self.counts["handed back"] += 1  # shutdown
        return Outcome.requeue()

    async def _invoke(self, task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
        event_loop = asyncio.get_running_loop()
        awaitable: Awaitable[Any]
        if task.executor == "async":
            awaitable = task.fn(*args, **kwargs)
        else:
            call: functools.partial[Any]
            if task.executor == "thread":
                executor: Executor = self._thread_pool()
                context = contextvars.copy_context()
                call = functools.partial(context.run, task.fn, *args, **kwargs)
            else:
                executor = self._process_pool()
                call = functools.partial(
                    _call_in_process, task.fn.__module__, task.fn.__qualname__, args, kwargs
                )
            awaitable = self._submit(executor, call)
        try:
            if task.timeout is None:
                return await awaitable
            limit = task.timeout.total_seconds()
            deadline = event_loop.time() + limit
            try:
                return await asyncio.wait_for(awaitable, limit)
            except asyncio.TimeoutError:
                # wait_for raises the same TimeoutError the task itself may raise (a network
                # call giving up); only one raised at the deadline is the time limit.
                if event_loop.time() < deadline - _CLOCK_SLACK:
                    raise
                raise _TimedOut from None
        except (_TimedOut, asyncio.CancelledError):
            if task.executor == "thread":
                logger.warning(
                    "Task %r stopped waiting for its thread, which cannot be interrupted and "
                    "runs on until the function returns.",
                    task.name,
                )
            raise

    def _failed(
        self, task: Task[Any, Any], record: JobRecord, error: str, trace: str | None
    ) -> Outcome:
        if record.attempts < record.max_attempts:
            delay = task.retry_delay(record.attempts)
            self.counts["retried"] += 1
            logger.warning(
                "Job %s of task %r failed (attempt %d of %d): %s; retrying in %.1f s.",
                record.id,
                task.name,
                record.attempts,
                record.max_attempts,
                error,
                delay.total_seconds(),
            )
            now = self.backend.clock() if self.backend is not None else datetime.now(UTC)
            return Outcome.retry(now + delay, error, trace)
        self.counts["failed"] += 1
        logger.error(
            "Job %s of task %r failed on its last attempt (%d of %d): %s\n%s",
            record.id,
            task.name,
            record.attempts,
            record.max_attempts,
            error,
            trace or "",
        )
        return Outcome.failure(error, trace)

    def _submit(self, executor: Executor, call: functools.partial[Any]) -> asyncio.Future[Any]:
        future = executor.submit(call)
        self._calls.add(future)
        future.add_done_callback(self._calls.discard)
        return asyncio.wrap_future(future)

    def _thread_pool(self) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self._threads_size, "underway-job")
        return self._threads

    def _process_pool(self) -> ProcessPoolExecutor:
        if self._processes is None:
            # Spawned, not forked: forking a process that runs threads (the store's, the
            # thread pool's) can deadlock the child.
            self._processes = ProcessPoolExecutor(
                self._processes_size, mp_context=multiprocessing.get_context("spawn")
            )
        return self._processes

    async def _report_progress(self, lease: Lease, fraction: float, message: str | None) -> None:
        if self.backend is not None:
            try:
                await self.backend.set_progress(lease, fraction, message)
            except BackendError:
                logger.warning(
                    "Could not store the progress of job %s.", lease.job_id, exc_info=True
                )
