"""The threads of a BackgroundRunner: where plain-function after-response tasks run.

Starlette sends each plain function to anyio's thread pool and waits for it: two wake-ups
of the event loop and a thread hand-off per task, which cost an endpoint about half its
throughput. Here the event loop collects the jobs of one turn and hands them over at its
end, waking at most one sleeping thread, and does not wait for them; a thread that takes
a job wakes another while jobs are left. A job costs the event loop a few microseconds.

Threads start as needed: the first with the first job, more only when every thread is
stuck in a call (none has started a job since the last look, a few milliseconds ago) while
jobs wait, so that a slow task does not hold up the others, and no thread is started for
a burst of quick ones.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import deque
from typing import Generic, Protocol, TypeVar

__all__ = ["STALL_CHECK", "Job", "Workers"]

#: Seconds between two looks at whether the busy threads are stuck.
STALL_CHECK = 0.01


class Run(Protocol):
    """What a job runs: plain functions of one response, up to an index."""

    def call_sync(self, end: int) -> None:
        """Call the plain functions up to ``end`` in the calling thread."""


R = TypeVar("R", bound=Run)


class Job(Generic[R]):
    """``run.call_sync(end)``, to be called in ``context``; ``future`` if someone waits."""

    __slots__ = ("context", "end", "future", "run")

    def __init__(
        self,
        run: R,
        end: int,
        context: contextvars.Context,
        future: asyncio.Future[None] | None = None,
    ) -> None:
        self.run = run
        self.end = end
        self.context = context
        self.future = future


def resolve(future: asyncio.Future[None]) -> None:
    """Mark ``future`` done, unless it was cancelled meanwhile."""
    if not future.done():
        future.set_result(None)


class Workers(Generic[R]):
    """Threads that run jobs handed over by one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_threads: int) -> None:
        self._loop = loop
        self._max_threads = max_threads
        self._lock = threading.Lock()
        self._wakeup = threading.Semaphore(0)
        self._queue: deque[Job[R]] = deque()
        self._active: set[Job[R]] = set()  # handed over, not finished
        self._pending: list[Job[R]] = []  # collected during this turn of the event loop
        self.threads: list[threading.Thread] = []
        self._sleeping = 0
        self.started = 0  # jobs taken by a thread, ever
        self._seen_started = -1
        self._stall_check: asyncio.TimerHandle | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._closing = False

    # Event-loop side.

    def submit(self, job: Job[R]) -> None:
        """Queue ``job``; the threads get this turn's jobs together, at its end."""
        if not self._pending:
            self._loop.call_soon(self._hand_over)
        self._pending.append(job)

    def _hand_over(self) -> None:
        batch, self._pending = self._pending, []
        if self._closing:
            return  # the runner gave up on these and has named them
        with self._lock:
            self._queue.extend(batch)
            self._active.update(batch)
            wake = self._sleeping > 0
            if wake:
                self._sleeping -= 1
        if wake:
            self._wakeup.release()
        elif not self.threads:
            self._start_thread()
        if self._stall_check is None:
            self._stall_check = self._loop.call_later(STALL_CHECK, self._check_stall)

    def _check_stall(self) -> None:
        self._stall_check = None
        with self._lock:
            if not self._queue:
                return
            stuck = self.started == self._seen_started
            self._seen_started = self.started
            wake = self._sleeping > 0
            if wake:
                self._sleeping -= 1
        if wake:
            self._wakeup.release()
        elif stuck and len(self.threads) < self._max_threads:
            self._start_thread()
        self._stall_check = self._loop.call_later(STALL_CHECK, self._check_stall)

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"underway-background-{len(self.threads) + 1}", daemon=True
        )
        self.threads.append(thread)
        thread.start()

    def busy(self) -> bool:
        """Whether a job is waiting or running."""
        return bool(self._pending or self._active)

    def jobs(self) -> list[Job[R]]:
        """The jobs waiting or running."""
        with self._lock:
            return [*self._active, *self._pending]

    def idle(self) -> asyncio.Future[None]:
        """A future that is done once no job is waiting or running."""
        waiter = self._loop.create_future()
        with self._lock:  # a thread finishing the last job reads the waiters under it too
            if self.busy():
                self._idle_waiters.append(waiter)
            else:
                waiter.set_result(None)
        return waiter

    def _check_idle(self) -> None:
        if self.busy():
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            resolve(waiter)

    def close(self) -> None:
        """Let every thread end once its current job is done; drop the jobs not started."""
        if self._stall_check is not None:
            self._stall_check.cancel()
            self._stall_check = None
        with self._lock:
            self._closing = True
            self._queue.clear()
            sleeping, self._sleeping = self._sleeping, 0
        for _ in range(sleeping):
            self._wakeup.release()

    # Thread side.

    def _work(self) -> None:
        lock, queue, active, loop = self._lock, self._queue, self._active, self._loop
        done: Job[R] | None = None
        while True:
            with lock:  # once per job: finish the last one and take the next
                notify_idle = False
                if done is not None:
                    active.discard(done)
                    notify_idle = not active and bool(self._idle_waiters)
                job = queue.popleft() if queue else None
                spread = False
                if job is not None:
                    self.started += 1
                    spread = bool(queue) and self._sleeping > 0
                    if spread:
                        self._sleeping -= 1
                elif not self._closing:
                    self._sleeping += 1
            if done is not None:
                if done.future is not None:
                    loop.call_soon_threadsafe(resolve, done.future)
                if notify_idle:
                    loop.call_soon_threadsafe(self._check_idle)
            done = job
            if job is None:
                if self._closing:
                    return
                self._wakeup.acquire()
                continue
            if spread:
                self._wakeup.release()
            job.context.run(job.run.call_sync, job.end)
