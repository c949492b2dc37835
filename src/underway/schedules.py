"""Durable schedules: a task enqueued once per tick, however many workers run.

Every worker runs a :class:`Scheduler` for each schedule of the app. All of them compute
the same tick instants (intervals are aligned on the Unix epoch, times of day and cron
expressions are absolute), and each tick is claimed through the backend, which lets
exactly one claimer win and enqueues the job in the same transaction.

Ticks missed while no worker ran (a deploy, an outage) follow the schedule's misfire
policy: ``"once"`` (the default) enqueues one job for all of them, ``"all"`` one per
missed tick (the latest 100 at most), ``"skip"`` none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from datetime import time as dt_time
from typing import TYPE_CHECKING, Literal

from underway.triggers import (
    CronTrigger,
    IntervalTrigger,
    TimesTrigger,
    Trigger,
    make_trigger,
    resolve_timezone,
)

if TYPE_CHECKING:
    from underway.app import Underway
    from underway.backends.base import Backend

__all__ = ["MisfirePolicy", "Schedule", "Scheduler"]

logger = logging.getLogger("underway.schedules")

MisfirePolicy = Literal["once", "all", "skip"]
_POLICIES = ("once", "all", "skip")
#: The most missed ticks that misfire="all" enqueues, and the most a search looks at.
MAX_MISSED = 100
#: Seconds a scheduler waits after a store error before it tries again (doubling).
_RETRY_MIN, _RETRY_MAX = 0.1, 5.0
_SEARCH_LIMIT = 200_000
UTC = timezone.utc


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a task is enqueued, and what happens to ticks missed while no worker ran.

    Attributes:
        name: The schedule's name: the name of the task it enqueues.
        trigger: The tick instants.
        misfire: ``"once"``, ``"all"`` or ``"skip"``.
    """

    name: str
    trigger: Trigger
    misfire: MisfirePolicy = "once"

    @classmethod
    def build(
        cls,
        name: str,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        time: dt_time | Sequence[dt_time] | None = None,
        cron: str | None = None,
        timezone: tzinfo | str | None = None,
        misfire: MisfirePolicy = "once",
    ) -> Schedule:
        """Validate ``loop()``-style arguments and build a schedule.

        Raises:
            TypeError, ValueError: the arguments are invalid; the message says what to pass.
        """
        if misfire not in _POLICIES:
            raise ValueError(
                f"misfire must be 'once' (one run for all missed ticks), 'all' or 'skip', "
                f"not {misfire!r}."
            )
        trigger = make_trigger(
            seconds, minutes, hours, time, cron, resolve_timezone(timezone), aligned=True
        )
        if isinstance(trigger, IntervalTrigger) and trigger.seconds <= 0:
            raise ValueError(
                "A durable schedule needs an interval above zero, or time= or cron=; "
                "for example @uw.loop(minutes=5)."
            )
        return cls(name, trigger, misfire)

    def describe(self) -> str:
        """A short human description, such as ``every 300 s`` or ``cron 0 9 * * *``."""
        trigger = self.trigger
        if isinstance(trigger, IntervalTrigger):
            return f"every {trigger.seconds:g} s"
        if isinstance(trigger, CronTrigger):
            return f"cron {trigger.expression} ({trigger.zone})"
        if isinstance(trigger, TimesTrigger):
            times = ", ".join(t.strftime("%H:%M:%S") for t in trigger.times)
            return f"daily at {times} ({trigger.zone})"
        return repr(trigger)

    def next_tick(self, now: datetime) -> datetime:
        """The first tick at or after ``now``."""
        return self.trigger.first(now)

    def due_ticks(self, last: datetime | None, now: datetime) -> list[datetime]:
        """The ticks to claim now, after ``last``, by the misfire policy (oldest first)."""
        if last is None:
            return []
        trigger = self.trigger
        if isinstance(trigger, IntervalTrigger):
            # Computed, not searched: a search stops after _SEARCH_LIMIT ticks, so after a
            # long outage of a fast schedule "once" claimed a tick far behind now and then,
            # one search later, another (several catch-up jobs instead of one). timedelta
            # arithmetic is exact, so these instants equal the next_after() chain.
            step = timedelta(seconds=trigger.seconds)
            missed_count = (now - last) // step
            if missed_count < 1 or self.misfire == "skip":
                return []
            keep = 1 if self.misfire == "once" else min(missed_count, MAX_MISSED)
            return [last + step * n for n in range(missed_count - keep + 1, missed_count + 1)]
        missed: list[datetime] = []
        tick = self.trigger.next_after(last)
        for _ in range(_SEARCH_LIMIT):
            if tick > now:
                break
            missed.append(tick)
            if len(missed) > MAX_MISSED:
                del missed[0]
            tick = self.trigger.next_after(tick)
        if not missed or self.misfire == "skip":
            return []
        if self.misfire == "once":
            return missed[-1:]
        return missed


class Scheduler:
    """Claims the ticks of one schedule for as long as a worker runs."""

    def __init__(self, app: Underway, backend: Backend, schedule: Schedule) -> None:
        self.app = app
        self.backend = backend
        self.schedule = schedule
        self.fired = 0

    async def run(self, stopping: asyncio.Event) -> None:
        """Claim ticks until ``stopping`` is set.

        A store error (a lock held too long, a lost connection) is logged and the claim
        tried again: it must not end the schedule for as long as the worker runs.
        """
        event_loop = asyncio.get_running_loop()
        delay = _RETRY_MIN
        while not stopping.is_set():
            began = event_loop.time()
            try:
                await self._run(stopping)
            except Exception:
                if event_loop.time() - began > _RETRY_MAX:
                    delay = _RETRY_MIN  # it worked for a while: a new outage
                logger.exception(
                    "Schedule %r: the job store failed; trying again in %.1f s.",
                    self.schedule.name,
                    delay,
                )
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)
                delay = min(delay * 2, _RETRY_MAX)
            else:
                return

    async def _run(self, stopping: asyncio.Event) -> None:
        schedule, backend = self.schedule, self.backend
        last = await backend.last_schedule_tick(schedule.name)
        for tick in schedule.due_ticks(last, backend.clock()):
            await self._claim(tick, missed=True)
        while not stopping.is_set():
            now = backend.clock()
            last = await backend.last_schedule_tick(schedule.name)
            late = schedule.due_ticks(last, now)
            if late:
                for tick in late:
                    await self._claim(tick, missed=True)
                continue
            tick = schedule.next_tick(now)
            if last is not None and tick <= last:
                tick = schedule.trigger.next_after(last)
            delay = (tick - backend.clock()).total_seconds()
            if delay > 0:
                try:
                    await asyncio.wait_for(stopping.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                else:
                    return
            await self._claim(tick, missed=False)

    async def _claim(self, tick: datetime, *, missed: bool) -> None:
        task = self.app.tasks[self.schedule.name]
        new_job = task.options(queue=task.queue).new_job((), {})
        if await self.backend.claim_schedule_tick(self.schedule.name, tick, new_job):
            self.fired += 1
            logger.info(
                "Schedule %r: enqueued the %s tick of %s (job %s).",
                self.schedule.name,
                "missed" if missed else "due",
                tick.isoformat(),
                new_job.id,
            )
