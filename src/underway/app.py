"""``Underway``: the application object of the durable queue.

``uw = Underway("sqlite:///underway.db")`` names where jobs are stored. Tasks and durable
schedules register on it; producers enqueue through it; workers run what it knows.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import time as dt_time
from datetime import timedelta, tzinfo
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from underway.backends import backend_from_url
from underway.backends.base import Backend
from underway.handle import Job
from underway.job import JobRecord, NewJob, as_timedelta
from underway.schedules import MisfirePolicy, Schedule
from underway.serializers import DEFAULT_MAX_PAYLOAD_BYTES, JsonSerializer, Serializer
from underway.task import Task

if TYPE_CHECKING:
    from types import TracebackType

    from underway.worker import Worker

__all__ = ["Underway"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class Underway:
    """A durable job queue: where jobs are stored, and the tasks and schedules it runs.

    Args:
        url: Where jobs live: ``"sqlite:///underway.db"`` (the default, a file next to your
            program), ``"memory://"`` (this process only, for tests), and with the extras
            installed ``"redis://..."`` or ``"postgresql://..."``.
        serializer: How arguments and results are stored; default JSON (orjson).
        max_payload_bytes: The largest serialized arguments or result accepted.
        result_ttl: How long finished jobs (their results and errors) are kept; workers
            delete older ones about once a minute. ``None`` keeps them until
            ``underway jobs purge``.

    The store is opened on first use; ``async with uw:`` opens and closes it explicitly.

    Example:
        >>> uw = Underway("sqlite:///underway.db")
        >>> @uw.task(retries=3)
        ... async def send_email(to: str) -> None: ...
        >>> # job = await send_email.enqueue("a@example.com")
    """

    def __init__(
        self,
        url: str = "sqlite:///underway.db",
        *,
        serializer: Serializer | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        result_ttl: float | timedelta | None = timedelta(days=7),
    ) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url must be a string such as 'sqlite:///underway.db', not {url!r}.")
        backend_from_url(url)  # validate the URL now, so that a typo fails at start-up
        self.url = url
        self.result_ttl = None if result_ttl is None else as_timedelta(result_ttl, "result_ttl")
        self.serializer: Serializer = serializer or JsonSerializer(
            max_payload_bytes=max_payload_bytes
        )
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.schedules: dict[str, Schedule] = {}
        self._shared: Backend | None = None  # memory:// has one store per process
        self._backends: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Backend] = (
            weakref.WeakKeyDictionary()
        )
        self._opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._portal: _Portal | None = None

    def __repr__(self) -> str:
        return f"<Underway {self.url!r} tasks={len(self.tasks)}>"

    # -- lifetime -------------------------------------------------------------------------

    async def backend(self) -> Backend:
        """Return this event loop's connection to the store, opening it on first use."""
        event_loop = asyncio.get_running_loop()
        backend = self._backends.get(event_loop)
        if backend is not None:
            return backend
        # Concurrent first uses (gather of enqueues) must wait for one open, not use a
        # connection another coroutine is still opening.
        lock = self._opening.setdefault(event_loop, asyncio.Lock())
        async with lock:
            backend = self._backends.get(event_loop)
            if backend is None:
                if self.url.startswith("memory:"):
                    if self._shared is None:
                        self._shared = backend_from_url(self.url)
                    backend = self._shared
                else:
                    backend = backend_from_url(self.url)
                await backend.open()
                self._backends[event_loop] = backend
        return backend

    async def open(self) -> None:
        """Open the store now (it opens by itself on first use otherwise)."""
        await self.backend()

    async def close(self) -> None:
        """Close this event loop's connection to the store."""
        backend = self._backends.pop(asyncio.get_running_loop(), None)
        if backend is not None and backend is not self._shared:
            await backend.close()

    async def __aenter__(self) -> Underway:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def portal(self) -> _Portal:
        """The background event loop that synchronous callers enqueue through."""
        if self._portal is None:
            self._portal = _Portal()
        return self._portal

    # -- registration ---------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str = "default",
        retries: int = 3,
        retry_backoff: float | timedelta = 1.0,
        timeout: float | timedelta | None = None,
        priority: int = 0,
        unique: bool = False,
        process: bool = False,
    ) -> _TaskDecorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        queue: str = "default",
        retries: int = 3,
        retry_backoff: float | timedelta = 1.0,
        timeout: float | timedelta | None = None,
        priority: int = 0,
        unique: bool = False,
        process: bool = False,
    ) -> Task[Any, Any] | _TaskDecorator:
        """Register a function (async or plain) as a durable task.

        Use as ``@uw.task`` or ``@uw.task(retries=5, timeout=30)``. See
        :class:`~underway.task.Task` for the options.

        Raises:
            ValueError: another task is registered under the same name, or an option is
                invalid.
        """
        options: dict[str, Any] = {
            "name": name,
            "queue": queue,
            "retries": retries,
            "retry_backoff": retry_backoff,
            "timeout": timeout,
            "priority": priority,
            "unique": unique,
            "process": process,
        }
        decorator = _TaskDecorator(self, options)
        return decorator if fn is None else decorator(fn)

    def _register(self, task: Task[Any, Any]) -> None:
        existing = self.tasks.get(task.name)
        if existing is not None and existing.fn is not task.fn:
            raise ValueError(
                f"A task named {task.name!r} is already registered ({existing.fn!r}); "
                "pass name= to give one of them another name."
            )
        self.tasks[task.name] = task

    def loop(
        self,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        time: dt_time | Sequence[dt_time] | None = None,
        cron: str | None = None,
        timezone: tzinfo | str | None = None,
        name: str | None = None,
        queue: str = "default",
        misfire: MisfirePolicy = "once",
    ) -> Callable[[Callable[[], Any]], Task[[], Any]]:
        """Register a durable schedule: the function runs as a job once per tick.

        Takes the scheduling arguments of :func:`underway.loop`. However many workers
        run, each tick is enqueued exactly once.

        Args:
            misfire: Ticks missed while no worker ran: ``"once"`` (default) runs one job
                for all of them, ``"all"`` one per missed tick (at most 100), ``"skip"``
                none.
        """

        def decorator(fn: Callable[[], Any]) -> Task[[], Any]:
            task = fn if isinstance(fn, Task) else self.task(name=name, queue=queue)(fn)
            schedule = Schedule.build(
                task.name,
                seconds=seconds,
                minutes=minutes,
                hours=hours,
                time=time,
                cron=cron,
                timezone=timezone,
                misfire=misfire,
            )
            self._add_schedule(schedule)
            return task

        return decorator

    def cron(
        self,
        expression: str,
        *,
        timezone: tzinfo | str | None = None,
        name: str | None = None,
        queue: str = "default",
        misfire: MisfirePolicy = "once",
    ) -> Callable[[Callable[[], Any]], Task[[], Any]]:
        """Register a durable schedule on a cron expression, such as ``"0 9 * * MON-FRI"``.

        The same as ``uw.loop(cron=expression, ...)``.
        """
        return self.loop(
            cron=expression, timezone=timezone, name=name, queue=queue, misfire=misfire
        )

    def _add_schedule(self, schedule: Schedule) -> None:
        if schedule.name in self.schedules:
            raise ValueError(f"A schedule for task {schedule.name!r} is already registered.")
        self.schedules[schedule.name] = schedule

    # -- jobs -----------------------------------------------------------------------------

    async def enqueue_jobs(self, jobs: Sequence[NewJob]) -> list[Job[Any]]:
        """Store serialized jobs; used by :meth:`Task.enqueue`."""
        backend = await self.backend()
        records = await backend.enqueue_many(jobs)
        return [Job(self, record) for record in records]

    async def get_job(self, job_id: str) -> Job[Any] | None:
        """Return a handle on the job with this id, or ``None`` if there is none."""
        record = await self.backend_record(job_id)
        return None if record is None else Job(self, record)

    async def backend_record(self, job_id: str) -> JobRecord | None:
        """Return the stored record of a job, or ``None``."""
        return await (await self.backend()).get_job(job_id)

    async def cancel_job(self, job_id: str) -> JobRecord | None:
        """Cancel a job by id; see :meth:`Job.cancel`."""
        return await (await self.backend()).cancel(job_id)

    # -- workers --------------------------------------------------------------------------

    def worker(self, **options: Any) -> Worker:
        """Return a :class:`~underway.worker.Worker` for this app (see its arguments)."""
        from underway.worker import Worker

        return Worker(self, **options)

    async def run_worker(self, **options: Any) -> None:
        """Run a worker in this event loop until it is stopped (Ctrl-C, SIGTERM)."""
        await self.worker(**options).run()


class _TaskDecorator:
    """The decorator ``@uw.task(...)`` returns."""

    def __init__(self, app: Underway, options: dict[str, Any]) -> None:
        self._app = app
        self._options = options

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    def __call__(self, fn: Callable[..., Any], /) -> Task[Any, Any]:
        task: Task[Any, Any] = Task(self._app, fn, **self._options)
        self._app._register(task)
        return task


class _Portal:
    """A daemon thread with its own event loop, for enqueueing from synchronous code."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                event_loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=event_loop.run_forever, name="underway-portal", daemon=True
                )
                thread.start()
                self._loop = event_loop
            return self._loop

    def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "enqueue_sync() was called from async code, where it would block the event "
                "loop; use 'await task.enqueue(...)' instead."
            )

        async def invoke() -> T:
            return await fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(invoke(), self._event_loop()).result()
