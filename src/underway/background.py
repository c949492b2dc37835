"""After-response tasks: ``underway.BackgroundTasks``, Starlette's API without its pitfalls.

``add_task(func, *args, **kwargs)`` records a call; after the response body is sent, the
tasks run in the order they were added, ``async def`` functions awaited on the event loop
and plain functions in a thread, never on the event loop. What differs from
``starlette.background``:

* a task that raises is logged at ERROR with its name and traceback, and the tasks after
  it still run (Starlette stops at the first failure and leaves the rest unrun);
* consecutive plain functions of one response share one trip to a thread instead of
  paying one each;
* a run cut short (its request cancelled, or the application shut down past its grace
  period) logs at ERROR the name of every task that did not finish;
* with a :class:`BackgroundRunner` (``underway.starlette.install(app)`` and
  ``underway.fastapi.install(app)`` start one in the app's lifespan), the plain functions
  that end a response's list go to the runner's own threads in one batch per turn of the
  event loop and the request does not wait for them, and shutdown drains every task
  within a grace period.

When Starlette is installed, :class:`BackgroundTasks` and :class:`BackgroundTask` are
subclasses of Starlette's, accepted wherever Starlette's are (``Response(background=...)``);
underway itself does not need Starlette.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import timedelta
from types import FunctionType, MethodType, TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, cast

from underway.background_threads import Job, Workers, resolve

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_MAX_THREADS",
    "BackgroundRunner",
    "BackgroundTask",
    "BackgroundTasks",
]

logger = logging.getLogger("underway.background")

P = ParamSpec("P")

#: Seconds that after-response tasks get to finish once the application shuts down.
DEFAULT_GRACE = 30.0
#: Threads a runner may start for plain functions; Starlette's thread pool has as many.
DEFAULT_MAX_THREADS = 40
# How long cancelled tasks get to unwind once the grace period has run out.
_UNWIND = 1.0

_current_runner: contextvars.ContextVar[BackgroundRunner | None] = contextvars.ContextVar(
    "underway_background_runner", default=None
)


class DurableCall(Protocol):
    """A call of a durable task, prepared by ``Task.prepare_durable_call``.

    ``app`` stores ``job`` through its ``enqueue_jobs``; this module knows nothing more of
    the queue, so that after-response tasks never import it.
    """

    app: Any
    job: Any


class _Task(Protocol):
    """What a run needs of a task: Starlette's ``BackgroundTask`` has it too."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    is_async: bool


def task_name(func: object) -> str:
    """Return the name that logs use for a task: ``module.qualified_name`` of its function.

    ``functools.partial`` objects are named after the function they wrap; a callable object
    after its class.
    """
    while isinstance(func, functools.partial):
        func = func.func
    qualname = getattr(func, "__qualname__", None)
    if not isinstance(qualname, str):
        qualname = type(func).__qualname__
    module = getattr(func, "__module__", None) or type(func).__module__
    return f"{module}.{qualname}" if module and module != "builtins" else qualname


def _is_async_callable(func: object) -> bool:
    # Plain functions and methods, nearly every task, are answered from their code flags;
    # one with attributes of its own may carry a coroutine marker: ask inspect.
    plain = func.__func__ if type(func) is MethodType else func
    if type(plain) is FunctionType and not plain.__dict__:
        return bool(plain.__code__.co_flags & inspect.CO_COROUTINE)
    while isinstance(func, functools.partial):
        func = func.func
    call = getattr(type(func), "__call__", None)  # noqa: B004 - an async __call__, if any
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call)


# Functions and bound methods: callable, and never durable tasks (those are Task objects).
_PLAIN_CALLABLES = (FunctionType, MethodType)


def _check_callable(func: object) -> None:
    if not callable(func):
        raise TypeError(
            f"add_task() needs the function to call after the response, but got {func!r} "
            f"(a {type(func).__name__} object). Pass the function and its arguments "
            "separately, as in add_task(write_log, 'message'), not the result of calling it."
        )


if TYPE_CHECKING:
    from starlette.background import BackgroundTask as _StarletteTask
    from starlette.background import BackgroundTasks as _StarletteTasks
else:
    try:
        from starlette.background import BackgroundTask as _StarletteTask
        from starlette.background import BackgroundTasks as _StarletteTasks
    except ModuleNotFoundError:  # underway works without Starlette: then no base is needed

        class _StarletteTask:
            pass

        class _StarletteTasks(_StarletteTask):
            pass


class BackgroundTask(_StarletteTask):
    """One call to make after the response: a function and its arguments.

    Attributes:
        func: The function, plain or ``async def``.
        args: Its positional arguments.
        kwargs: Its keyword arguments.
        is_async: Whether ``func`` is awaited on the event loop (else it runs in a thread).
    """

    def __init__(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
        """Record ``func(*args, **kwargs)``.

        Raises:
            TypeError: ``func`` is not callable.
        """
        if type(func) not in _PLAIN_CALLABLES:
            _check_callable(func)
        # Not Starlette's __init__: it would inspect func again, at several times the cost.
        self.__dict__.update(func=func, args=args, kwargs=kwargs, is_async=_is_async_callable(func))

    async def __call__(self) -> None:
        """Run the task as a one-task :class:`BackgroundTasks` would."""
        await BackgroundTasks([self])()


class BackgroundTasks(_StarletteTasks):
    """The tasks to run after one response, in the order they were added.

    Pass it as a response's ``background``; FastAPI users annotate a parameter with
    ``underway.fastapi.BackgroundTasks`` instead, as they would with FastAPI's own.

    Attributes:
        tasks: The tasks added so far.
    """

    def __init__(self, tasks: Sequence[_StarletteTask] | None = None) -> None:
        """Start with ``tasks`` (objects with ``func``, ``args``, ``kwargs``, ``is_async``)."""
        self.tasks = list(tasks) if tasks else []
        self.durable: list[DurableCall] = []
        # Set by a framework that can run code after the endpoint returned and before the
        # response is sent; called when the first durable task is added, to store it there.
        self.before_response: Callable[[], None] | None = None

    def add_task(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
        """Call ``func(*args, **kwargs)`` after the response has been sent.

        A function registered with ``@uw.task`` is not called here: its job is stored on the
        durable queue instead, before the response is sent when the endpoint succeeds
        (``underway.fastapi.BackgroundTasks`` does that; see :meth:`enqueue_durable`), and
        a worker runs it. Its arguments are checked now.

        Raises:
            TypeError: ``func`` is not callable.
            SerializationError: ``func`` is a durable task and an argument cannot be stored.
        """
        if type(func) not in _PLAIN_CALLABLES:  # durable tasks are Task objects
            prepare = getattr(func, "prepare_durable_call", None)
            if prepare is not None:
                self.durable.append(prepare(args, kwargs))
                if len(self.durable) == 1 and self.before_response is not None:
                    self.before_response()
                return
            _check_callable(func)
        # What BackgroundTask(func, *args, **kwargs) makes, without packing the arguments
        # again.
        task = BackgroundTask.__new__(BackgroundTask)
        task.__dict__.update(func=func, args=args, kwargs=kwargs, is_async=_is_async_callable(func))
        self.tasks.append(task)

    async def enqueue_durable(self) -> list[Any]:
        """Store the jobs of the durable tasks added so far; return their ``Job`` handles.

        Jobs of one app go to its store in one round trip. Called once the endpoint has
        returned; if it is never called, the jobs are stored when the tasks run, after the
        response.

        Raises:
            BackendError: the store could not be reached; nothing of that app was stored.
        """
        calls, self.durable = self.durable, []
        by_app: dict[int, list[DurableCall]] = {}
        for call in calls:
            by_app.setdefault(id(call.app), []).append(call)
        jobs: list[Any] = []
        for group in by_app.values():
            jobs += await group[0].app.enqueue_jobs([call.job for call in group])
        return jobs

    async def __call__(self) -> None:
        """Run the tasks; the application calls this once the response body is sent.

        A task that raises is logged and does not stop the others. With a
        :class:`BackgroundRunner` bound to the request, the plain functions at the end of
        the list are handed to its threads and this returns without waiting for them.
        """
        if self.durable:
            try:
                await self.enqueue_durable()
            except Exception:
                logger.exception("Could not store the durable tasks of this response.")
        if not self.tasks:
            return
        run = _Run(self.tasks)
        runner = _current_runner.get()
        if runner is None or not runner._accepts():
            await _drive(run, _hop_inline, len(run.tasks))
            return
        tail = run.sync_tail()
        if tail:
            await _drive(run, runner._hop, tail, runner)
        if tail < len(run.tasks) and not run.stopped:
            runner._hand_over(run)


class _Run:
    """The tasks of one response and how far they have got.

    ``position`` is the index of the task running or next to run; a worker thread moves it
    through plain functions while the event loop may read it for a report.
    """

    __slots__ = ("position", "reported", "started", "stopped", "tasks")

    def __init__(self, tasks: Iterable[object]) -> None:
        # Ours or Starlette's BackgroundTask objects: both have what _Task describes.
        self.tasks = cast("list[_Task]", list(tasks))
        self.position = 0
        self.started = False  # whether tasks[position] has begun
        self.stopped = False  # set when the run is given up: no further task starts
        self.reported = False  # whether its unfinished tasks have been logged

    def sync_tail(self) -> int:
        """Index of the first of the plain functions that end the list (its length if none)."""
        tail = len(self.tasks)
        while tail > 0 and not self.tasks[tail - 1].is_async:
            tail -= 1
        return tail

    def sync_end(self) -> int:
        """Index after the plain functions that start at ``position``."""
        end = self.position
        while end < len(self.tasks) and not self.tasks[end].is_async:
            end += 1
        return end

    def unfinished(self) -> list[tuple[str, str]]:
        """``(name, "running" | "not started")`` for each task that has not finished."""
        return [
            (task_name(task.func), "running" if i == 0 and self.started else "not started")
            for i, task in enumerate(self.tasks[self.position :])
        ]

    def give_up(self, why: str) -> list[tuple[str, str]]:
        """Start no further task; log what is unfinished, unless that was done before."""
        self.stopped = True
        unfinished = self.unfinished()
        if not self.reported:
            self.reported = True
            _report_unfinished(unfinished, why)
        return unfinished

    def call_sync(self, end: int) -> None:
        """Call the plain functions up to ``end``, in the calling (worker) thread."""
        tasks = self.tasks
        while self.position < end and not self.stopped:
            task = tasks[self.position]
            self.started = True
            try:
                task.func(*task.args, **task.kwargs)
            except BaseException:  # a worker thread has nobody else to report to
                _log_failure(task)
            self.started = False
            self.position += 1


def _log_failure(task: _Task) -> None:
    name = task_name(task.func)
    logger.error(
        "After-response task %s failed; the tasks after it still run.",
        name,
        exc_info=True,
        extra={"underway_task": name},
    )


def _report_unfinished(unfinished: list[tuple[str, str]], why: str) -> None:
    if not unfinished:
        return
    listing = ", ".join(f"{name} ({state})" for name, state in unfinished)
    logger.error(
        "%d after-response task(s) did not finish because %s: %s.",
        len(unfinished),
        why,
        listing,
        extra={"underway_unfinished": [name for name, _ in unfinished]},
    )


Hop = Callable[["_Run", int], Awaitable[None]]


async def _drive(run: _Run, hop: Hop, stop: int, runner: BackgroundRunner | None = None) -> None:
    """Run the tasks before ``stop``: coroutines here, plain functions through ``hop``.

    If the run is interrupted (the request task is cancelled), what did not finish is
    logged by name before the interruption goes on. With ``runner``, the run is in its
    books meanwhile, so that it can wait for the run at shutdown.
    """
    if runner is not None:
        runner._inline[run] = asyncio.current_task()
    tasks = run.tasks
    try:
        while run.position < stop and not run.stopped:
            task = tasks[run.position]
            if not task.is_async:
                await hop(run, run.sync_end())
                continue
            run.started = True
            try:
                await task.func(*task.args, **task.kwargs)
            except Exception:
                _log_failure(task)
            run.started = False
            run.position += 1
    except BaseException as exc:
        run.give_up(f"they were interrupted ({type(exc).__name__})")
        raise
    finally:
        if runner is not None:
            runner._left(run)


async def _hop_inline(run: _Run, end: int) -> None:
    """Call plain functions in a thread of anyio's pool, as Starlette would, but once."""
    try:
        import anyio.to_thread  # present wherever Starlette is
    except ModuleNotFoundError:
        await asyncio.to_thread(run.call_sync, end)
    else:
        await anyio.to_thread.run_sync(run.call_sync, end)


def _seconds(value: float | timedelta, what: str) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds or a timedelta, not {value!r}.")
    if value < 0:
        raise ValueError(f"{what} must be 0 or more seconds, not {value}.")
    return float(value)


class BackgroundRunner:
    """Runs the after-response tasks of one application and drains them at shutdown.

    ``underway.starlette.install(app)`` (or ``underway.fastapi.install(app)``) runs one in
    the app's lifespan and binds it to every request, which is all most applications need.
    Used directly: ``async with BackgroundRunner() as runner:`` starts it on the running
    event loop and drains it on exit; responses use it while a context binds it
    (:meth:`bind`, which ``underway.starlette.BackgroundMiddleware`` calls per request).

    Coroutines run in the request that sent the response, right after its body, as in
    Starlette; the plain functions that end a response's list go to the runner's threads
    and the request does not wait for them (plain functions followed by a coroutine are
    waited for, to keep the order). The runner keeps track of both, so that :meth:`drain`
    can wait for them. Once draining has begun, responses run their tasks as if no runner
    were bound.
    """

    def __init__(
        self, *, grace: float | timedelta = DEFAULT_GRACE, max_threads: int = DEFAULT_MAX_THREADS
    ) -> None:
        """Create a runner; it starts with ``async with`` or :meth:`start`.

        Args:
            grace: How long :meth:`drain` waits for unfinished tasks before it gives up on
                them (seconds or a timedelta).
            max_threads: The most threads that call plain functions at once.

        Raises:
            TypeError: An argument has the wrong type.
            ValueError: ``grace`` is negative or ``max_threads`` is less than 1.
        """
        self.grace = _seconds(grace, "grace")
        if isinstance(max_threads, bool) or not isinstance(max_threads, int):
            raise TypeError(f"max_threads must be an int, not {max_threads!r}.")
        if max_threads < 1:
            raise ValueError(f"max_threads must be 1 or more, not {max_threads}.")
        self.max_threads = max_threads
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: Workers[_Run] | None = None
        self._inline: dict[_Run, asyncio.Task[Any] | None] = {}  # runs in their request
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._open = False

    def start(self) -> None:
        """Start taking tasks on the running event loop.

        Raises:
            RuntimeError: No event loop is running, or the runner was started before.
        """
        if self._loop is not None:
            raise RuntimeError("This BackgroundRunner was started before; create a new one.")
        self._loop = asyncio.get_running_loop()
        self._open = True

    async def __aenter__(self) -> BackgroundRunner:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.drain()

    def bind(self) -> contextvars.Token[BackgroundRunner | None]:
        """Make responses sent in the current context hand their tasks to this runner.

        Returns:
            A token to pass to :meth:`unbind`.
        """
        return _current_runner.set(self)

    @staticmethod
    def unbind(token: contextvars.Token[BackgroundRunner | None]) -> None:
        """Undo the :meth:`bind` that returned ``token``."""
        _current_runner.reset(token)

    def _accepts(self) -> bool:
        try:
            return self._open and asyncio.get_running_loop() is self._loop
        except RuntimeError:  # not on an asyncio event loop (trio): run as if unbound
            return False

    def _left(self, run: _Run) -> None:
        del self._inline[run]
        if not self._inline and self._idle_waiters:
            self._check_idle()

    def _hand_over(self, run: _Run) -> None:
        self._threads().submit(Job(run, len(run.tasks), contextvars.copy_context()))

    def _threads(self) -> Workers[_Run]:
        if self._workers is None:
            assert self._loop is not None
            self._workers = Workers(self._loop, self.max_threads)
        return self._workers

    async def _hop(self, run: _Run, end: int) -> None:
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()
        self._threads().submit(Job(run, end, contextvars.copy_context(), future))
        try:
            await future
        except asyncio.CancelledError:
            run.stopped = True  # the thread finishes the function it is in, then stops
            raise

    def busy(self) -> bool:
        """Whether a task given to the runner has not finished yet."""
        return bool(self._inline) or (self._workers is not None and self._workers.busy())

    def _idle_futures(self) -> list[asyncio.Future[None]]:
        assert self._loop is not None
        futures = []
        if self._inline:
            waiter = self._loop.create_future()
            self._idle_waiters.append(waiter)
            futures.append(waiter)
        if self._workers is not None and self._workers.busy():
            futures.append(self._workers.idle())
        return futures

    def _check_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            resolve(waiter)

    async def wait_idle(self) -> None:
        """Wait until every task given to the runner so far has finished.

        Tests call it between a request and their checks; it does not stop the runner.
        """
        while self.busy():
            await asyncio.wait(self._idle_futures())

    async def drain(self) -> list[str]:
        """Stop taking tasks and wait up to the grace period for those taken to finish.

        Then the runner gives up on the rest: one ERROR record names each unfinished task
        and whether it was running or not started; coroutines are cancelled (by cancelling
        the request task that runs them) and plain functions not started are dropped. A
        plain function already running in a thread cannot be interrupted; it goes on until
        it returns or the process exits.

        Returns:
            The names of the tasks that did not finish; empty when all did.
        """
        if self._loop is None or not self._open:
            return []
        self._open = False
        loop = self._loop
        deadline = loop.time() + self.grace
        while self.busy():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await asyncio.wait(self._idle_futures(), timeout=remaining)
        unfinished: list[str] = []
        if self.busy():
            unfinished = self._give_up()
            current = asyncio.current_task()
            for task in set(self._inline.values()):
                if task is not None and task is not current:
                    task.cancel()
            if self._inline:
                await asyncio.wait(self._idle_futures(), timeout=_UNWIND)
        if self._workers is not None:
            self._workers.close()
        return unfinished

    def _give_up(self) -> list[str]:
        runs = list(self._inline)
        if self._workers is not None:
            # Jobs that an inline run waits for are part of that run, listed above.
            runs += [job.run for job in self._workers.jobs() if job.future is None]
        unfinished = [run.unfinished() for run in runs]
        for run in runs:
            run.stopped = True
            run.reported = True
        _report_unfinished(
            [item for items in unfinished for item in items],
            f"the application shut down and the grace period of {self.grace:g} s ran out "
            "(a plain function already running goes on in its thread until it returns)",
        )
        return [name for items in unfinished for name, _ in items]
