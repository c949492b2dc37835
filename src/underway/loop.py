"""In-process periodic loops, compatible with ``discord.ext.tasks``.

``@underway.loop(seconds=5)`` turns an ``async def`` into a :class:`Loop`; ``start()`` runs
it in the background on the event loop. The API and its semantics are those of
discord.py 2.7's ``tasks.loop``, with these differences:

* ``cron=`` and ``timezone=`` arguments; a naive ``datetime.time`` means the local zone
  (discord.py assumes UTC);
* ``overrun="skip"`` coalesces runs missed while the body overran into one;
* the handled exception types default to ``OSError`` and ``TimeoutError``; the reconnect
  backoff is capped at a minute and every retry is logged;
* ``stop()`` while the loop sleeps ends it at once, without running the body again;
* ``restart()`` on a stopped loop starts it; ``start()`` with no running event loop defers
  the start until ``underway.run()`` runs one;
* exception types added on a loop defined in a class carry to each instance's copy.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import weakref
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta, tzinfo
from datetime import time as dt_time
from typing import Any, Generic, Literal, TypeVar

from underway.clock import Clock, SystemClock
from underway.errors import LoopError
from underway.triggers import (
    CronTrigger,
    IntervalTrigger,
    TimesTrigger,
    Trigger,
    make_trigger,
    resolve_timezone,
)

__all__ = ["Loop", "Overrun", "loop"]

logger = logging.getLogger("underway.loop")

LoopFunction = Callable[..., Coroutine[Any, Any, Any]]
LF = TypeVar("LF", bound=LoopFunction)
FT = TypeVar("FT", bound=LoopFunction)
Overrun = Literal["catch_up", "skip"]

#: Exceptions that a loop retries by default (with ``reconnect=True``).
DEFAULT_EXCEPTIONS: tuple[type[BaseException], ...] = tuple(
    dict.fromkeys((OSError, TimeoutError, asyncio.TimeoutError))
)
BACKOFF_INITIAL = 1.0
BACKOFF_CAP = 60.0
_OVERRUNS = ("catch_up", "skip")


class _Registry:
    """Loops started before an event loop ran, waiting for ``underway.run()``.

    This is module-level state on purpose: ``heartbeat.start()`` at the top of a script
    has no other place to leave its request before the event loop exists.
    """

    def __init__(self) -> None:
        self.deferred: dict[Loop[Any], tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self.started: weakref.WeakSet[Loop[Any]] = weakref.WeakSet()


registry = _Registry()


def _consume_result(task: asyncio.Task[None]) -> None:
    # The error hook has already reported the exception; retrieving it here keeps
    # asyncio from logging it a second time as "never retrieved".
    if not task.cancelled():
        task.exception()


def _check_coroutine_function(func: object, what: str) -> None:
    if not inspect.iscoroutinefunction(func):
        raise TypeError(
            f"{what} must be an 'async def' function, not {func!r}; "
            "define it with 'async def' (wrap blocking code in asyncio.to_thread)."
        )


class Loop(Generic[LF]):
    """A coroutine function run periodically in the background.

    Create one with :func:`loop`. The attributes ``coro``, ``count`` and ``reconnect`` are
    those given to it.
    """

    def __init__(
        self,
        coro: LF,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        time: dt_time | Sequence[dt_time] | None = None,
        cron: str | None = None,
        timezone: tzinfo | str | None = None,
        count: int | None = None,
        reconnect: bool = True,
        name: str | None = None,
        overrun: Overrun = "catch_up",
        clock: Clock | None = None,
    ) -> None:
        """Create a loop; see :func:`loop` for the arguments."""
        _check_coroutine_function(coro, "The function decorated with @loop")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise TypeError(f"count must be an int or None, not {type(count).__name__}.")
        if count is not None and count <= 0:
            raise ValueError(f"count must be greater than 0 or None (forever), not {count}.")
        if not isinstance(reconnect, bool):
            raise TypeError(f"reconnect must be True or False, not {reconnect!r}.")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string or None, not {type(name).__name__}.")
        if overrun not in _OVERRUNS:
            raise ValueError(
                f"overrun must be 'catch_up' (run every missed iteration) or 'skip' "
                f"(coalesce missed iterations into one), not {overrun!r}."
            )
        self.coro: LF = coro
        self.count: int | None = count
        self.reconnect: bool = reconnect
        self.overrun: Overrun = overrun
        self._zone = resolve_timezone(timezone)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._name = name if name is not None else f"underway.loop: {coro.__qualname__}"
        self._attribute = coro.__name__
        self._valid_exception: tuple[type[BaseException], ...] = DEFAULT_EXCEPTIONS
        self._before_loop: LoopFunction | None = None
        self._after_loop: LoopFunction | None = None
        self._error: LoopFunction | None = None
        self._injected: Any = None
        self._spec: dict[str, Any] = {}
        self._trigger: Trigger = IntervalTrigger(0)
        self._set_trigger(seconds, minutes, hours, time, cron)
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._interrupt: asyncio.Future[None] | None = None
        self._current_loop = 0
        self._next_iteration: datetime | None = None
        self._last_iteration: datetime | None = None
        self._stop_requested = False
        self._is_being_cancelled = False
        self._has_failed = False

    def _set_trigger(
        self,
        seconds: float,
        minutes: float,
        hours: float,
        time: dt_time | Sequence[dt_time] | None,
        cron: str | None,
    ) -> None:
        self._trigger = make_trigger(seconds, minutes, hours, time, cron, self._zone)
        if isinstance(self._trigger, IntervalTrigger):
            self._spec = {
                "seconds": float(seconds),
                "minutes": float(minutes),
                "hours": float(hours),
            }
        else:
            self._spec = {}

    # -- descriptor: one copy per instance ------------------------------------------------

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self._attribute = name

    def __get__(self, obj: Any, objtype: Any = None) -> Loop[LF]:
        if obj is None:
            return self
        copy: Loop[LF] = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy._reset_runtime()
        copy._injected = obj
        # Cache on the instance so that every access returns the same running copy.
        setattr(obj, self._attribute, copy)
        return copy

    # -- read-only views ------------------------------------------------------------------

    @property
    def seconds(self) -> float | None:
        """The ``seconds`` of an interval loop, ``None`` for a time or cron loop."""
        return self._spec.get("seconds")

    @property
    def minutes(self) -> float | None:
        """The ``minutes`` of an interval loop, ``None`` for a time or cron loop."""
        return self._spec.get("minutes")

    @property
    def hours(self) -> float | None:
        """The ``hours`` of an interval loop, ``None`` for a time or cron loop."""
        return self._spec.get("hours")

    @property
    def time(self) -> list[dt_time] | None:
        """The times of day this loop runs at (sorted, unique), ``None`` otherwise."""
        if isinstance(self._trigger, TimesTrigger):
            return list(self._trigger.times)
        return None

    @property
    def cron(self) -> str | None:
        """The cron expression this loop runs on, ``None`` otherwise."""
        if isinstance(self._trigger, CronTrigger):
            return self._trigger.expression
        return None

    @property
    def timezone(self) -> tzinfo:
        """The zone that naive times and cron expressions are read in."""
        return self._zone

    @property
    def name(self) -> str:
        """The loop's name, used for its asyncio task and in log messages."""
        return self._name

    @property
    def clock(self) -> Clock:
        """Where the loop reads the time; assign a ``VirtualClock`` to test a loop."""
        return self._clock

    @clock.setter
    def clock(self, value: Clock) -> None:
        if self.is_running():
            raise LoopError(f"Cannot change the clock of loop {self._name!r} while it runs.")
        self._clock = value

    @property
    def current_loop(self) -> int:
        """How many iterations have completed in the current run (0 once it has ended)."""
        return self._current_loop

    @property
    def next_iteration(self) -> datetime | None:
        """When the next iteration is due (aware, UTC), or ``None`` if none is coming."""
        if self._task is None or self._task.done() or self._stop_requested:
            return None
        return self._next_iteration

    def get_task(self) -> asyncio.Task[None] | None:
        """Return the asyncio task running the loop, or ``None`` if it never started."""
        return self._task

    def is_running(self) -> bool:
        """Whether the loop's task is running."""
        return self._task is not None and not self._task.done()

    def is_being_cancelled(self) -> bool:
        """Whether the loop is being cancelled (true inside ``after_loop`` after ``cancel()``)."""
        return self._is_being_cancelled

    def failed(self) -> bool:
        """Whether the last run ended with an unhandled exception."""
        return self._has_failed

    # -- control --------------------------------------------------------------------------

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the decorated function once, directly, and return what it returns."""
        if self._injected is not None:
            args = (self._injected, *args)
        return await self.coro(*args, **kwargs)

    def start(self, *args: Any, **kwargs: Any) -> asyncio.Task[None] | None:
        """Start the loop in the background, passing ``args`` and ``kwargs`` to each call.

        With no event loop running yet (a script's top level), the start is deferred until
        ``underway.run()`` runs one, and ``None`` is returned.

        Returns:
            The asyncio task running the loop, or ``None`` if the start was deferred.

        Raises:
            LoopError: the loop is already running or already waiting to start.
        """
        if self.is_running() or self in registry.deferred:
            raise LoopError(
                f"Loop {self._name!r} is already running; call restart() to start it "
                "over, or stop() and wait for it to end first."
            )
        if self._injected is not None:
            args = (self._injected, *args)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            registry.deferred[self] = (args, kwargs)
            return None
        return self._launch(args, kwargs)

    def _launch(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> asyncio.Task[None]:
        self._has_failed = False
        self._stop_requested = False
        self._next_iteration = None
        self._last_iteration = None
        task = asyncio.get_running_loop().create_task(self._run(args, kwargs), name=self._name)
        task.add_done_callback(_consume_result)
        self._task = task
        registry.started.add(self)
        return task

    def stop(self) -> None:
        """End the loop gracefully: a running iteration finishes, no new one starts.

        If the loop is sleeping, it ends at once (``after_loop`` still runs).
        """
        registry.deferred.pop(self, None)
        if self.is_running():
            self._stop_requested = True
            self._wake()

    def cancel(self) -> None:
        """Cancel the loop's task, interrupting the body if it is running."""
        registry.deferred.pop(self, None)
        if self.is_running() and not self._is_being_cancelled and self._task is not None:
            self._task.cancel()

    def restart(self, *args: Any, **kwargs: Any) -> None:
        """Cancel the loop if it runs, then start it again with the given arguments.

        A loop that is not running is simply started.
        """
        if registry.deferred.pop(self, None) is not None or self._task is None:
            self.start(*args, **kwargs)
            return
        task = self._task
        if task.done():
            self.start(*args, **kwargs)
            return
        task.add_done_callback(lambda _: self.start(*args, **kwargs))
        if not self._is_being_cancelled:
            task.cancel()

    def change_interval(
        self,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        time: dt_time | Sequence[dt_time] | None = None,
        cron: str | None = None,
    ) -> None:
        """Change when the loop runs; takes effect at once, even in the middle of a sleep.

        Pass an interval (``seconds``/``minutes``/``hours``), ``time=`` or ``cron=``; a
        loop can switch freely between the three.

        Raises:
            TypeError, ValueError: as for :func:`loop`.
        """
        was_interval = isinstance(self._trigger, IntervalTrigger)
        self._set_trigger(seconds, minutes, hours, time, cron)
        if not self.is_running() or self._next_iteration is None:
            return
        # A new interval counts from the last iteration, as in discord.py; a switch to
        # another kind of schedule counts from now.
        interval = isinstance(self._trigger, IntervalTrigger)
        if interval and was_interval and self._last_iteration is not None:
            self._next_iteration = self._trigger.next_after(self._last_iteration)
        else:
            self._next_iteration = self._trigger.first(self._clock.now())
        self._wake()

    # -- exception types ------------------------------------------------------------------

    def add_exception_type(self, *exceptions: type[BaseException]) -> None:
        """Retry (with backoff) instead of ending when the body raises one of these types.

        Raises:
            TypeError: an argument is not an exception class.
        """
        for exc in exceptions:
            if not inspect.isclass(exc) or not issubclass(exc, BaseException):
                raise TypeError(
                    f"{exc!r} is not an exception class; pass classes such as "
                    "ConnectionError or aiohttp.ClientError."
                )
        self._valid_exception = (*self._valid_exception, *exceptions)

    def remove_exception_type(self, *exceptions: type[BaseException]) -> bool:
        """Stop retrying on these types. Returns whether every one of them was handled."""
        before = len(self._valid_exception)
        self._valid_exception = tuple(x for x in self._valid_exception if x not in exceptions)
        return len(self._valid_exception) == before - len(exceptions)

    def clear_exception_types(self) -> None:
        """Retry on no exception at all: any exception from the body ends the loop."""
        self._valid_exception = ()

    # -- hooks ----------------------------------------------------------------------------

    def before_loop(self, coro: FT) -> FT:
        """Register a coroutine to run once before the first iteration.

        Calling ``stop()`` inside it ends the loop before the first iteration.
        """
        _check_coroutine_function(coro, "before_loop")
        self._before_loop = coro
        return coro

    def after_loop(self, coro: FT) -> FT:
        """Register a coroutine to run once after the loop ends, however it ends.

        Inside it, ``is_being_cancelled()`` tells a cancellation from a normal end.
        """
        _check_coroutine_function(coro, "after_loop")
        self._after_loop = coro
        return coro

    def error(self, coro: FT) -> FT:
        """Register a coroutine that receives an unhandled exception before the loop ends.

        The default logs it at ERROR with its traceback and the loop's name.
        """
        _check_coroutine_function(coro, "error")
        self._error = coro
        return coro

    # -- the loop itself ------------------------------------------------------------------

    def _wake(self) -> None:
        if self._interrupt is not None and not self._interrupt.done():
            self._interrupt.set_result(None)

    async def _call_hook(self, hook: LoopFunction | None, *args: Any) -> None:
        if hook is None:
            return
        if self._injected is not None:
            await hook(self._injected, *args)
        else:
            await hook(*args)

    async def _sleep_until(self, deadline: datetime) -> None:
        self._interrupt = asyncio.get_running_loop().create_future()
        try:
            await self._clock.sleep_until(deadline, self._interrupt)
        finally:
            self._interrupt = None

    async def _sleep_until_next(self) -> None:
        # Re-read the target after every wake-up: change_interval() may have moved it,
        # stop() may have been called, or the timer may have fired a hair early.
        slept = False
        while not self._stop_requested:
            target = self._next_iteration
            if target is None or self._clock.now() >= target:
                break
            await self._sleep_until(target)
            slept = True
        if not slept:
            # Due already (seconds=0, or catching up): still let other tasks run once per
            # iteration, or a body that never awaits would starve the event loop.
            await asyncio.sleep(0)

    def _stopping(self) -> bool:
        # A method rather than the attribute, so that type checkers do not assume that the
        # flag stays as it was across an await.
        return self._stop_requested

    def _following(self, tick: datetime) -> datetime:
        following = self._trigger.next_after(tick)
        if self.overrun == "skip":
            now = self._clock.now()
            if following <= now:
                following = self._trigger.latest_due(tick, now)
        return following

    def _backoff(self, attempt: int) -> float:
        ceiling = min(BACKOFF_CAP, BACKOFF_INITIAL * 2.0 ** min(attempt - 1, 16))
        return ceiling * random.uniform(0.5, 1.0)

    async def _run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            await self._call_hook(self._before_loop)
            if self._stop_requested:
                return
            self._next_iteration = self._trigger.first(self._clock.now())
            attempt = 0
            while True:
                await self._sleep_until_next()
                if self._stopping():
                    return
                assert self._next_iteration is not None
                tick = self._next_iteration
                self._last_iteration = tick
                try:
                    await self.coro(*args, **kwargs)
                except self._valid_exception as exc:
                    if not self.reconnect:
                        raise
                    attempt += 1
                    delay = self._backoff(attempt)
                    logger.warning(
                        "Loop %r raised %s, a handled exception type; retrying in %.2f s "
                        "(attempt %d).",
                        self._name,
                        type(exc).__name__,
                        delay,
                        attempt,
                        exc_info=exc,
                    )
                    await self._sleep_until(self._clock.now() + timedelta(seconds=delay))
                    continue
                attempt = 0
                self._current_loop += 1
                if self._current_loop == self.count or self._stop_requested:
                    return
                self._next_iteration = self._following(tick)
        except asyncio.CancelledError:
            self._is_being_cancelled = True
            raise
        except Exception as exc:
            self._has_failed = True
            await self._report(exc)
            raise
        finally:
            await self._finish()

    async def _report(self, exc: Exception) -> None:
        if self._error is None:
            logger.error(
                "Unhandled exception in loop %r; the loop has stopped.", self._name, exc_info=exc
            )
            return
        try:
            await self._call_hook(self._error, exc)
        except Exception as hook_exc:
            logger.exception(
                "The error handler of loop %r raised while handling %r.", self._name, exc
            )
            raise hook_exc from exc

    async def _finish(self) -> None:
        try:
            await self._call_hook(self._after_loop)
        except Exception:
            self._has_failed = True
            logger.exception("after_loop of loop %r raised.", self._name)
        finally:
            self._is_being_cancelled = False
            self._current_loop = 0
            self._stop_requested = False


def loop(
    *,
    seconds: float = 0,
    minutes: float = 0,
    hours: float = 0,
    time: dt_time | Sequence[dt_time] | None = None,
    cron: str | None = None,
    timezone: tzinfo | str | None = None,
    count: int | None = None,
    reconnect: bool = True,
    name: str | None = None,
    overrun: Overrun = "catch_up",
    clock: Clock | None = None,
) -> Callable[[LF], Loop[LF]]:
    """Decorate an ``async def`` to run periodically in the background.

    Args:
        seconds: Seconds between iterations (added to ``minutes`` and ``hours``).
        minutes: Minutes between iterations.
        hours: Hours between iterations.
        time: A ``datetime.time`` or a list of them: run daily at these times. A naive time
            is read in ``timezone``; an aware time in its own zone.
        cron: A cron expression such as ``"*/5 * * * *"`` (a sixth, leading field gives
            seconds), read in ``timezone``.
        timezone: A ``ZoneInfo`` or an IANA name; default: the system's local zone.
        count: Stop after this many successful iterations; ``None`` runs forever.
        reconnect: Retry, with capped exponential backoff, when the body raises one of the
            handled exception types (default ``OSError`` and ``TimeoutError``).
        name: The name of the asyncio task and of the loop in log messages.
        overrun: What happens when the body runs past the next due time: ``"catch_up"``
            runs each missed iteration at once (discord.py's behaviour), ``"skip"`` runs a
            single one for all of them.
        clock: Where to read the time; tests pass a :class:`~underway.clock.VirtualClock`.

    Raises:
        TypeError, ValueError: an argument is invalid; the message says what to pass.

    Example:
        >>> @loop(seconds=30)
        ... async def heartbeat() -> None:
        ...     print("every 30 seconds")
    """
    # Validate now, so that a mistake points at the decorator line.
    make_trigger(seconds, minutes, hours, time, cron, resolve_timezone(timezone))

    def decorator(func: LF) -> Loop[LF]:
        return Loop(
            func,
            seconds=seconds,
            minutes=minutes,
            hours=hours,
            time=time,
            cron=cron,
            timezone=timezone,
            count=count,
            reconnect=reconnect,
            name=name,
            overrun=overrun,
            clock=clock,
        )

    return decorator
