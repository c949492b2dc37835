"""``underway.current_job()``: what a running task knows about its own job."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from underway.errors import UnderwayError

__all__ = ["JobContext", "current_job"]

_current: contextvars.ContextVar[JobContext] = contextvars.ContextVar("underway_current_job")


@dataclass(slots=True)
class JobContext:
    """The job a task is running for.

    Attributes:
        id: The job's id.
        task_name: The task's name.
        attempt: Which run of the job this is (1 for the first).
        max_attempts: How many runs it may have.
    """

    id: str
    task_name: str
    attempt: int
    max_attempts: int
    _report: Callable[[float, str | None], Coroutine[Any, Any, Any]] = field(repr=False)
    _loop: asyncio.AbstractEventLoop = field(repr=False)
    _pending: tuple[float, str | None] | None = field(default=None, repr=False)
    _writing: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the task has come; stored and shown by the CLI and dashboard.

        Cheap to call often: writes are coalesced, the latest value wins. Works from async
        tasks and from plain functions running in the worker's threads.

        Args:
            fraction: From 0.0 (nothing done) to 1.0 (all done).
            message: A short note, such as ``"step 2 of 5"``.

        Raises:
            ValueError: ``fraction`` is outside 0.0 to 1.0.
        """
        if not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress must be a number from 0.0 to 1.0, not {fraction!r}.")
        with self._lock:
            self._pending = (float(fraction), message)
            if self._writing:
                return
            self._writing = True
        self._loop.call_soon_threadsafe(self._start_writer)

    def _start_writer(self) -> None:
        self._loop.create_task(self._write())

    async def _write(self) -> None:
        while True:
            with self._lock:
                pending, self._pending = self._pending, None
                if pending is None:
                    self._writing = False
                    return
            await self._report(*pending)


def current_job() -> JobContext:
    """Return the job the calling task runs for.

    Raises:
        UnderwayError: called outside a task run by an underway worker (in a process-pool
            task, too: those run in another process).
    """
    try:
        return _current.get()
    except LookupError:
        raise UnderwayError(
            "underway.current_job() was called outside a job; it works only inside a task "
            "that an underway worker runs (async or thread tasks, not process=True ones)."
        ) from None


def set_current_job(context: JobContext) -> contextvars.Token[JobContext]:
    """Make ``context`` the current job (for the worker)."""
    return _current.set(context)


def reset_current_job(token: contextvars.Token[JobContext]) -> None:
    """Undo :func:`set_current_job`."""
    _current.reset(token)
