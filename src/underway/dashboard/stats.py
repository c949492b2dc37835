"""What the dashboard's pages show, read from the store through the backend contract.

Everything here is computed on request from :class:`~underway.backends.base.Backend` reads
(``count_jobs``, ``list_jobs``, ``list_workers``, ``last_schedule_tick``), each bounded, so
that a page costs the same on a store of a thousand jobs or ten million.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from underway.backends.base import Backend
from underway.job import JobRecord, JobStatus, WorkerInfo
from underway.schedules import Schedule

__all__ = [
    "STATUS_ORDER",
    "Chart",
    "Finished",
    "QueueRow",
    "ScheduleRow",
    "WorkerRow",
    "chart",
    "queue_rows",
    "recent_finished",
    "running_jobs",
    "schedule_rows",
    "worker_rows",
]

#: The order statuses are shown in.
STATUS_ORDER = (
    JobStatus.QUEUED,
    JobStatus.SCHEDULED,
    JobStatus.RUNNING,
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.DEAD,
)
#: The most jobs one list read returns (the backend contract allows more; pages are capped).
PAGE = 500
#: The most running jobs the overview and workers pages read.
MAX_RUNNING = 500
#: The most missed schedule ticks counted.
MAX_MISSED = 100


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One queue and its number of jobs per status."""

    queue: str
    counts: Mapping[JobStatus, int]

    @property
    def total(self) -> int:
        """All of the queue's jobs."""
        return sum(self.counts.values())

    @property
    def depth(self) -> int:
        """Jobs waiting to run now (queued, including scheduled ones that are due)."""
        return self.counts.get(JobStatus.QUEUED, 0)


async def queue_rows(backend: Backend) -> list[QueueRow]:
    """Return every queue with its counts per status, by queue name."""
    counts = await backend.count_jobs()
    return [QueueRow(queue, dict(by_status)) for queue, by_status in sorted(counts.items())]


async def running_jobs(backend: Backend, limit: int = MAX_RUNNING) -> list[JobRecord]:
    """Return the running jobs (at most ``limit``), newest first."""
    return await backend.list_jobs(status=JobStatus.RUNNING, limit=limit)


@dataclass(frozen=True, slots=True)
class Finished:
    """Finished jobs read for the chart.

    Attributes:
        records: Succeeded, failed and dead jobs, newest first per status.
        complete_from: ``None`` when every job that finished since the chart's start was
            read; otherwise the time from which the read is complete (more jobs finished
            in the hour than the read's cap, so older minutes would be undercounted).
    """

    records: list[JobRecord]
    complete_from: datetime | None


async def recent_finished(backend: Backend, since: datetime, cap: int = 5000) -> Finished:
    """Read the jobs that finished since ``since``: at most ``cap`` per final status.

    Jobs are listed newest enqueued first, so a status is read until a page reaches jobs
    enqueued before ``since`` (a job enqueued earlier that finished later, such as a long
    or delayed one, may be missed), or until ``cap``.
    """
    records: list[JobRecord] = []
    complete_from: datetime | None = None
    for status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.DEAD):
        offset = 0
        while True:
            page = await backend.list_jobs(status=status, limit=PAGE, offset=offset)
            records.extend(page)
            if len(page) < PAGE or page[-1].enqueued_at < since:
                break
            offset += PAGE
            if offset >= cap:
                oldest = min((r.finished_at for r in page if r.finished_at), default=None)
                if oldest is not None and (complete_from is None or oldest > complete_from):
                    complete_from = oldest
                break
    return Finished(records, complete_from)


# -- the throughput chart -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    """One time bucket of the chart, with its SVG geometry."""

    start: datetime
    succeeded: int
    failed: int
    x: float
    width: float
    ok_y: float
    ok_height: float
    fail_y: float
    fail_height: float
    partial: bool = False

    @property
    def failure_rate(self) -> float | None:
        """Failed (and dead) over all finished jobs in the bucket; ``None`` if none."""
        if self.partial:
            return None
        total = self.succeeded + self.failed
        return None if total == 0 else self.failed / total


@dataclass(frozen=True, slots=True)
class Chart:
    """Throughput and failure rate per minute over the last hour, laid out for SVG."""

    bars: tuple[Bar, ...]
    width: int
    height: int
    plot_top: float
    plot_bottom: float
    plot_left: float
    plot_right: float
    y_max: int
    rate_points: str
    minutes: int
    total_succeeded: int
    total_failed: int
    complete_from: datetime | None = None

    @property
    def failure_rate(self) -> float | None:
        """The failure rate over the whole chart; ``None`` when nothing finished."""
        total = self.total_succeeded + self.total_failed
        return None if total == 0 else self.total_failed / total


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is at least ``value``."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def chart(
    records: Iterable[JobRecord],
    now: datetime,
    *,
    minutes: int = 60,
    width: int = 1160,
    height: int = 220,
    complete_from: datetime | None = None,
) -> Chart:
    """Lay out finished jobs per minute over the last ``minutes`` minutes.

    Bars stack succeeded (bottom) and failed or dead (top) jobs by their ``finished_at``;
    a line draws the failure rate of each minute against a 0-100 % scale. Minutes that
    begin before ``complete_from`` (see :class:`Finished`) are marked partial: not drawn,
    and left out of the totals, so that an incomplete read never shows as a dip or a
    failure spike.
    """
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=minutes)
    ok = [0] * minutes
    bad = [0] * minutes
    first_complete = 0
    if complete_from is not None:
        first_complete = min(
            max(math.ceil((complete_from - start).total_seconds() / 60), 0), minutes
        )
    for record in records:
        finished = record.finished_at
        if finished is None or not start <= finished < end:
            continue
        index = int((finished - start).total_seconds() // 60)
        if index < first_complete:
            continue
        if record.status is JobStatus.SUCCEEDED:
            ok[index] += 1
        else:
            bad[index] += 1
    left, right, top, bottom = 44.0, width - 44.0, 12.0, height - 24.0
    y_max = _nice_ceiling(max([o + b for o, b in zip(ok, bad, strict=True)] + [1]))
    slot = (right - left) / minutes
    scale = (bottom - top) / y_max
    bars = []
    points = []
    for i in range(minutes):
        x = left + i * slot
        ok_height = ok[i] * scale
        fail_height = bad[i] * scale
        bar = Bar(
            start=start + timedelta(minutes=i),
            succeeded=ok[i],
            failed=bad[i],
            x=round(x + 1, 2),
            width=round(max(slot - 2, 1), 2),
            ok_y=round(bottom - ok_height, 2),
            ok_height=round(ok_height, 2),
            fail_y=round(bottom - ok_height - fail_height, 2),
            fail_height=round(fail_height, 2),
            partial=i < first_complete,
        )
        bars.append(bar)
        rate = bar.failure_rate
        if rate is not None:
            y = bottom - rate * (bottom - top)
            points.append(f"{x + slot / 2:.1f},{y:.1f}")
    return Chart(
        bars=tuple(bars),
        width=width,
        height=height,
        plot_top=top,
        plot_bottom=bottom,
        plot_left=left,
        plot_right=right,
        y_max=y_max,
        rate_points=" ".join(points),
        minutes=minutes,
        total_succeeded=sum(ok),
        total_failed=sum(bad),
        complete_from=complete_from if first_complete else None,
    )


# -- workers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A registered worker, whether it is alive, and the jobs it runs."""

    info: WorkerInfo
    live: bool
    jobs: tuple[JobRecord, ...]


def is_live(info: WorkerInfo, now: datetime, stale_after: timedelta) -> bool:
    """Whether the worker heartbeated within ``stale_after``."""
    return info.heartbeat_at is not None and now - info.heartbeat_at <= stale_after


async def worker_rows(
    backend: Backend, now: datetime, stale_after: timedelta, running: list[JobRecord]
) -> list[WorkerRow]:
    """Return every registered worker with its liveness and its running jobs."""
    by_owner: dict[str, list[JobRecord]] = defaultdict(list)
    for record in running:
        if record.lease_owner is not None:
            by_owner[record.lease_owner].append(record)
    return [
        WorkerRow(info, is_live(info, now, stale_after), tuple(by_owner.get(info.id, ())))
        for info in await backend.list_workers()
    ]


# -- schedules ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """A durable schedule as the schedules page shows it.

    Attributes:
        name: The schedule's (and its task's) name.
        description: When it fires, in words.
        misfire: Its misfire policy.
        last_tick: The last tick a worker claimed, if any.
        next_tick: The next tick due.
        missed: Ticks that came due more than ``grace`` ago and were not claimed (no worker
            ran the schedules then); at most :data:`MAX_MISSED`.
    """

    name: str
    description: str
    misfire: str
    last_tick: datetime | None
    next_tick: datetime
    missed: int

    @property
    def missed_capped(self) -> bool:
        """Whether :attr:`missed` stopped counting at its cap."""
        return self.missed >= MAX_MISSED


def _missed_ticks(schedule: Schedule, last: datetime | None, now: datetime) -> int:
    if last is None:
        return 0
    count = 0
    tick = schedule.trigger.next_after(last)
    while tick <= now and count < MAX_MISSED:
        count += 1
        tick = schedule.trigger.next_after(tick)
    return count


async def schedule_rows(
    schedules: Mapping[str, Schedule],
    backend: Backend,
    now: datetime,
    grace: timedelta = timedelta(seconds=5),
) -> list[ScheduleRow]:
    """Return every schedule with its last and next tick and its missed ticks."""
    rows = []
    for name, schedule in sorted(schedules.items()):
        last = await backend.last_schedule_tick(name)
        upcoming = schedule.next_tick(now)
        if last is not None and upcoming <= last:
            upcoming = schedule.trigger.next_after(last)
        rows.append(
            ScheduleRow(
                name=name,
                description=schedule.describe(),
                misfire=schedule.misfire,
                last_tick=last,
                next_tick=upcoming,
                missed=_missed_ticks(schedule, last, now - grace),
            )
        )
    return rows
