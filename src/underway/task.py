"""Tasks: functions registered with ``@uw.task`` that run as durable jobs.

A :class:`Task` is a definition. Calling it calls the function, as before; ``await
task.enqueue(...)`` stores a job that a worker runs later and returns a
:class:`~underway.handle.Job` handle.
"""

from __future__ import annotations

import hashlib
import inspect
import random
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar

import orjson

from underway.handle import Job
from underway.job import NewJob, as_timedelta, new_job_id, new_job_ids

if TYPE_CHECKING:
    from underway.app import Underway

__all__ = ["Executor", "PreparedCall", "Task", "TaskCall"]

P = ParamSpec("P")
R = TypeVar("R")
Executor = Literal["async", "thread", "process"]
UTC = timezone.utc

#: How long a retry waits at most, whatever the backoff base.
MAX_RETRY_DELAY = timedelta(minutes=10)


def _positional_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return ()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in params if p.kind in kinds)


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _module_name(fn: Callable[..., Any]) -> str:
    """The importable name of ``fn``'s module, also when it is defined in a script.

    A function in ``python app.py`` lives in ``__main__``, but a worker imports ``app``;
    naming the task after the file keeps the two in agreement.
    """
    module = getattr(fn, "__module__", None) or "__main__"
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return str(spec.name)
    path = getattr(main, "__file__", None)
    return Path(path).stem if path else module


@dataclass(frozen=True, slots=True)
class PreparedCall:
    """A serialized call waiting to be stored (see ``BackgroundTasks.add_task``)."""

    app: Underway
    job: NewJob


@dataclass(frozen=True, slots=True)
class _CallOptions:
    delay: timedelta | None = None
    at: datetime | None = None
    priority: int | None = None
    unique_key: str | None = None
    queue: str | None = None


class Task(Generic[P, R]):
    """A function registered as a durable task.

    Attributes:
        fn: The function itself.
        name: The name jobs are stored under (default ``module.qualname``).
        queue: The queue its jobs wait in.
        retries: How many times a failed job runs again (0: never).
        retry_backoff: Seconds before the first retry; each later retry waits twice as
            long, with jitter, capped at ten minutes.
        timeout: A run taking longer is stopped and counts as failed; ``None``: no limit.
        priority: Higher runs first among due jobs.
        unique: ``True`` to let only one job with the same arguments wait or run at a
            time; enqueueing another returns the existing job.
        executor: ``"async"`` (coroutine functions, on the event loop), ``"thread"``
            (plain functions, in a thread pool) or ``"process"`` (CPU-bound functions).
    """

    def __init__(
        self,
        app: Underway,
        fn: Callable[P, Awaitable[R]] | Callable[P, R],
        *,
        name: str | None = None,
        queue: str = "default",
        retries: int = 3,
        retry_backoff: float | timedelta = 1.0,
        timeout: float | timedelta | None = None,
        priority: int = 0,
        unique: bool = False,
        process: bool = False,
    ) -> None:
        """Register ``fn``; use ``@uw.task(...)`` rather than this constructor."""
        if not callable(fn):
            raise TypeError(f"@uw.task decorates a function, not {fn!r}.")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, not {retries!r}.")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int, not {priority!r}.")
        if not isinstance(queue, str) or not queue:
            raise ValueError(f"queue must be a non-empty string, not {queue!r}.")
        is_async = inspect.iscoroutinefunction(fn)
        if process and is_async:
            raise ValueError(
                f"Task {fn.__qualname__!r} is 'async def' and asks for a process pool; "
                "process=True is for CPU-bound plain functions. Drop process=True or make "
                "it a plain function."
            )
        qualname = getattr(fn, "__qualname__", "")
        if process and (not qualname or "<" in qualname):
            # A pool process finds the function by module and qualified name; a nested
            # function or a lambda has none it can import, and every run would fail.
            raise ValueError(
                f"Task {qualname or fn!r} asks for a process pool but is not a module-level "
                "function, which a pool process could import by name; define it at the top "
                "level of a module, or drop process=True."
            )
        self.app = app
        self.fn = fn
        self.name = name or f"{_module_name(fn)}.{fn.__qualname__}"
        self.queue = queue
        self.retries = retries
        self.retry_backoff = as_timedelta(retry_backoff, "retry_backoff")
        self.timeout = None if timeout is None else as_timedelta(timeout, "timeout")
        self.priority = priority
        self.unique = bool(unique)
        self.executor: Executor = "async" if is_async else ("process" if process else "thread")
        self._param_names = _positional_names(fn)
        self._signature = _signature(fn)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)
        self.__qualname__ = getattr(fn, "__qualname__", self.name)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name!r} queue={self.queue!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Call the function directly, in this process, as if it were not a task."""
        return self.fn(*args, **kwargs)

    def options(
        self,
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        queue: str | None = None,
    ) -> TaskCall[P, R]:
        """Return this task with per-call options, to ``enqueue`` with.

        Args:
            delay: Run no earlier than this long from now.
            at: Run no earlier than this aware datetime.
            priority: Overrides the task's priority.
            unique_key: While a job with this key waits or runs, enqueueing another with
                the same key returns the existing job.
            queue: Overrides the task's queue.

        Example:
            >>> await send_email.options(delay=60, priority=5).enqueue("a@example.com")
        """
        if delay is not None and at is not None:
            raise TypeError("Pass delay= or at=, not both.")
        if at is not None and (not isinstance(at, datetime) or at.tzinfo is None):
            raise ValueError(
                "at= must be an aware datetime, e.g. datetime.now(timezone.utc) + "
                "timedelta(hours=1), so that its moment is unambiguous."
            )
        return TaskCall(
            self,
            _CallOptions(
                delay=None if delay is None else _non_negative(delay),
                at=at,
                priority=priority,
                unique_key=unique_key,
                queue=queue,
            ),
        )

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Store a job that runs this task with these arguments; return its handle.

        Raises:
            SerializationError: an argument cannot be stored as JSON; nothing was stored.
            PayloadTooLargeError: the arguments are over the size limit.
            BackendError: the job store could not be reached.
        """
        return await TaskCall(self, _CallOptions()).enqueue(*args, **kwargs)

    async def enqueue_in(self, connection: Any, /, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Store the job through your own database connection, inside your transaction.

        The job exists if and only if your transaction commits (PostgreSQL only).

        Args:
            connection: Your asyncpg connection, inside ``async with conn.transaction():``.

        Raises:
            TypeError: the app's store is not PostgreSQL.
        """
        return await TaskCall(self, _CallOptions()).enqueue_in(connection, *args, **kwargs)

    def prepare_durable_call(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> PreparedCall:
        """Serialize a call for ``BackgroundTasks.add_task``, which stores it later."""
        return PreparedCall(self.app, TaskCall(self, _CallOptions()).new_job(args, kwargs))

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Like :meth:`enqueue`, from synchronous code (scripts, Flask, Django views).

        Raises:
            RuntimeError: called from a thread that runs an event loop: await
                :meth:`enqueue` there instead.
        """
        return self.app.portal.call(self.enqueue, *args, **kwargs)

    async def enqueue_many(
        self, calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[Job[R]]:
        """Store many jobs of this task in one round trip.

        Args:
            calls: ``(args, kwargs)`` pairs, one per job.
        """
        call = TaskCall(self, _CallOptions())
        pairs = list(calls)
        ids = new_job_ids(len(pairs))
        jobs = [call.new_job(tuple(a), dict(k), ids[i]) for i, (a, k) in enumerate(pairs)]
        return await self.app.enqueue_jobs(jobs)

    def retry_delay(self, attempt: int) -> timedelta:
        """The wait before retry number ``attempt`` (1-based), with jitter."""
        base = self.retry_backoff * (2.0 ** min(attempt - 1, 20))
        return min(MAX_RETRY_DELAY, base) * random.uniform(0.5, 1.0)

    def unique_key_for(self, args: Sequence[Any], kwargs: Mapping[str, Any], payload: bytes) -> str:
        """The unique key of a call: the same for every spelling of the same arguments.

        ``f(7, full=True)``, ``f(account=7, full=True)`` and ``f(full=True, account=7)``
        (with defaults filled in) share a key; when the call cannot be bound to the
        signature or its arguments are not JSON, the serialized ``payload`` is the key.
        """
        canonical = payload
        if self._signature is not None:
            try:
                bound = self._signature.bind(*args, **kwargs)
                bound.apply_defaults()
                canonical = orjson.dumps(bound.arguments, option=orjson.OPT_SORT_KEYS)
            except (TypeError, orjson.JSONEncodeError):
                pass
        return f"{self.name}:{hashlib.blake2b(canonical, digest_size=16).hexdigest()}"


def _non_negative(value: float | timedelta) -> timedelta:
    delta = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if delta < timedelta(0):
        raise ValueError(f"delay must not be negative, got {value!r}.")
    return delta


class TaskCall(Generic[P, R]):
    """A task with per-call options; made by :meth:`Task.options`."""

    def __init__(self, task: Task[P, R], options: _CallOptions) -> None:
        self.task = task
        self._options = options

    def new_job(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], job_id: str | None = None
    ) -> NewJob:
        """Serialize a call into the job to store (raises before anything is stored)."""
        task, opts = self.task, self._options
        payload = task.app.serializer.dumps_call(task.name, args, kwargs, task._param_names)
        scheduled_at = opts.at
        if opts.delay is not None and opts.delay > timedelta(0):
            scheduled_at = datetime.now(UTC) + opts.delay
        unique_key = opts.unique_key
        if unique_key is None and task.unique:
            unique_key = task.unique_key_for(args, kwargs, payload)
        # By position (task_name, payload, queue, priority, max_attempts, scheduled_at,
        # unique_key, id): a bulk enqueue makes thousands at a time.
        return NewJob(
            task.name,
            payload,
            opts.queue or task.queue,
            task.priority if opts.priority is None else opts.priority,
            task.retries + 1,
            scheduled_at,
            unique_key,
            job_id or new_job_id(),
        )

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Store the job; see :meth:`Task.enqueue`."""
        (job,) = await self.task.app.enqueue_jobs([self.new_job(args, kwargs)])
        return job

    async def enqueue_in(self, connection: Any, /, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Store the job in the caller's transaction; see :meth:`Task.enqueue_in`."""
        app = self.task.app
        backend = await app.backend()
        enqueue_in = getattr(backend, "enqueue_in", None)
        if enqueue_in is None:
            raise TypeError(
                f"enqueue_in() stores a job in your own database transaction, which only the "
                f"PostgreSQL backend supports; this app uses {app.url!r}. Use enqueue()."
            )
        (record,) = await enqueue_in(connection, [self.new_job(args, kwargs)])
        return Job(app, record)

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Store the job from synchronous code; see :meth:`Task.enqueue_sync`."""
        return self.task.app.portal.call(self.enqueue, *args, **kwargs)
