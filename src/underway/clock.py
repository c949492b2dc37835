"""Clocks: where loops read the time and how they wait for it.

A loop asks its clock for the current time and to sleep until an absolute instant. The
default :class:`SystemClock` uses the real time; :class:`VirtualClock` lets tests (yours
and ours) move time forward by hand, so that a daily 09:00 loop or a DST change can be
checked in milliseconds instead of waiting for the day.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import datetime, timedelta, timezone
from typing import Protocol

__all__ = ["Clock", "SystemClock", "VirtualClock"]

UTC = timezone.utc


class Clock(Protocol):
    """What a loop needs from a clock."""

    def now(self) -> datetime:
        """Return the current time as an aware datetime."""
        ...

    async def sleep_until(self, deadline: datetime, interrupt: asyncio.Future[None]) -> None:
        """Return at ``deadline`` or as soon as ``interrupt`` is done, whichever is first.

        Args:
            deadline: An aware datetime. A deadline in the past returns at once.
            interrupt: A future that the caller resolves to cut the sleep short.
        """
        ...


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class SystemClock:
    """The real clock: wall time for targets, the event loop's timer for waiting."""

    def now(self) -> datetime:
        """Return the current time in UTC."""
        return datetime.now(UTC)

    async def sleep_until(self, deadline: datetime, interrupt: asyncio.Future[None]) -> None:
        """Sleep until ``deadline`` (wall time) unless ``interrupt`` completes first."""
        delay = (deadline - self.now()).total_seconds()
        if delay <= 0 or interrupt.done():
            # Still yield once so that a zero-second loop cannot starve the event loop.
            await asyncio.sleep(0)
            return
        handle = asyncio.get_running_loop().call_later(delay, _wake, interrupt)
        try:
            await interrupt
        finally:
            handle.cancel()


class VirtualClock:
    """A clock that only moves when told to, for tests.

    Sleepers wait until :meth:`advance` or :meth:`advance_to` moves the time past their
    deadline; each is woken in deadline order, and the event loop gets a chance to run the
    woken code before the clock moves on.

    Example:
        >>> clock = VirtualClock(datetime(2026, 3, 8, 6, 0, tzinfo=timezone.utc))
        >>> # @underway.loop(time=..., clock=clock) ... then: await clock.advance(hours=3)
    """

    def __init__(self, start: datetime | None = None) -> None:
        """Create a clock that reads ``start`` (default: the real current time).

        Args:
            start: An aware datetime to start at.

        Raises:
            ValueError: ``start`` is naive.
        """
        start = datetime.now(UTC) if start is None else start
        if start.tzinfo is None:
            raise ValueError(
                "VirtualClock needs an aware start time; pass tzinfo=timezone.utc or a ZoneInfo."
            )
        self._now = start.astimezone(UTC)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()
        self._advancing = False

    def now(self) -> datetime:
        """Return the virtual time, in UTC."""
        return self._now

    @property
    def sleepers(self) -> int:
        """How many coroutines are sleeping on this clock right now."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    async def sleep_until(self, deadline: datetime, interrupt: asyncio.Future[None]) -> None:
        """Sleep until the virtual time reaches ``deadline`` or ``interrupt`` is done."""
        if deadline <= self._now or interrupt.done():
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._counter), waiter))
        interrupt.add_done_callback(lambda _: _wake(waiter))
        try:
            await waiter
        finally:
            if not waiter.done():
                waiter.cancel()

    async def advance(
        self, seconds: float = 0, *, minutes: float = 0, hours: float = 0, days: float = 0
    ) -> None:
        """Move the time forward by the given amount, waking sleepers on the way."""
        step = timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days)
        if step < timedelta(0):
            raise ValueError("VirtualClock cannot go backwards; pass a positive amount.")
        await self.advance_to(self._now + step)

    async def advance_to(self, when: datetime) -> None:
        """Move the time forward to ``when``, waking each sleeper at its own deadline."""
        if when.tzinfo is None:
            raise ValueError("advance_to needs an aware datetime.")
        when = when.astimezone(UTC)
        if self._advancing:
            # Called from code that an outer advance woke (a body that "takes" time):
            # move the time; the outer advance goes on waking sleepers in order.
            self._now = max(self._now, when)
            await asyncio.sleep(0)
            return
        self._advancing = True
        try:
            await _settle()
            while self._sleepers and self._sleepers[0][0] <= max(when, self._now):
                deadline, _, waiter = heapq.heappop(self._sleepers)
                if waiter.done():
                    continue
                self._now = max(self._now, deadline)
                waiter.set_result(None)
                await _settle()
            self._now = max(self._now, when)
        finally:
            self._advancing = False
        await _settle()


async def _settle(rounds: int = 20) -> None:
    """Let other tasks run until they block again (bounded, to stay deterministic)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
