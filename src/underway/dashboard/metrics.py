"""The Prometheus endpoint: metrics computed from the store on every scrape.

Nothing is counted in memory: each scrape reads the store through the backend contract
(``count_jobs``, ``list_workers``, ``list_jobs``, ``last_schedule_tick``) and builds the
metric families with :mod:`prometheus_client`, so the numbers are the same whichever
process serves the scrape, and survive restarts. Every read is bounded.

Two kinds of numbers come out (``docs/dashboard.md`` lists every metric):

* Exact, over the whole store: jobs per queue and status, queue depth, registered and live
  workers, each worker's running jobs and heartbeat age, each schedule's ticks.
* Per task and queue, over the ``window`` most recently enqueued jobs (default 5,000):
  jobs enqueued, started, succeeded, failed and retried, and a histogram of run durations.
  These are gauges, not counters: purging old jobs or the window moving on lowers them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from underway.backends.base import Backend
from underway.job import JobRecord, JobStatus
from underway.schedules import Schedule

from .stats import PAGE, STATUS_ORDER, is_live, schedule_rows

__all__ = ["CONTENT_TYPE", "DURATION_BUCKETS", "collect", "render"]

#: The content type of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Upper bounds, in seconds, of the job duration histogram's buckets.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
#: The largest window a scrape may read.
MAX_WINDOW = 100_000


class _Snapshot:
    """A collector that hands out families computed beforehand (collect() is synchronous)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


async def _window(backend: Backend, size: int) -> list[JobRecord]:
    records: list[JobRecord] = []
    while len(records) < size:
        page = await backend.list_jobs(limit=min(PAGE, size - len(records)), offset=len(records))
        records.extend(page)
        if len(page) < PAGE:
            break
    return records


def _retries(record: JobRecord) -> int:
    """Runs of the job that ended in a retry, as its attempt count records them."""
    if record.status in (JobStatus.QUEUED, JobStatus.SCHEDULED):
        return record.attempts
    return max(record.attempts - 1, 0)


def _bucket_values(durations: list[float]) -> list[tuple[str, float]]:
    buckets: list[tuple[str, float]] = []
    for bound in DURATION_BUCKETS:
        buckets.append((repr(bound), float(sum(1 for d in durations if d <= bound))))
    buckets.append(("+Inf", float(len(durations))))
    return buckets


async def collect(
    backend: Backend,
    schedules: dict[str, Schedule],
    *,
    now: datetime,
    window: int = 5000,
    stale_after: timedelta = timedelta(seconds=30),
) -> list[Metric]:
    """Read the store and return the metric families of one scrape.

    Args:
        backend: The store.
        schedules: The app's durable schedules.
        now: The time of the scrape (aware UTC).
        window: How many of the most recently enqueued jobs the per-task metrics cover.
        stale_after: A worker whose last heartbeat is older is not counted as live.

    Raises:
        ValueError: ``window`` is below 0 or above 100,000.
    """
    if not 0 <= window <= MAX_WINDOW:
        raise ValueError(f"window must be from 0 to {MAX_WINDOW} jobs, got {window}.")
    families: list[Metric] = []

    counts = await backend.count_jobs()
    jobs = GaugeMetricFamily(
        "underway_jobs", "Jobs in the store by queue and status.", labels=["queue", "status"]
    )
    depth = GaugeMetricFamily(
        "underway_queue_depth",
        "Jobs waiting to run now (queued, including due scheduled jobs) by queue.",
        labels=["queue"],
    )
    for queue, by_status in sorted(counts.items()):
        for status in STATUS_ORDER:
            jobs.add_metric([queue, status.value], by_status.get(status, 0))
        depth.add_metric([queue], by_status.get(JobStatus.QUEUED, 0))
    families += [jobs, depth]

    workers = await backend.list_workers()
    running = await backend.list_jobs(status=JobStatus.RUNNING, limit=PAGE)
    per_owner: dict[str, int] = defaultdict(int)
    for record in running:
        if record.lease_owner is not None:
            per_owner[record.lease_owner] += 1
    live = GaugeMetricFamily(
        "underway_workers_live", "Workers whose last heartbeat is recent enough."
    )
    live.add_metric([], sum(1 for w in workers if is_live(w, now, stale_after)))
    registered = GaugeMetricFamily(
        "underway_workers_registered", "Workers in the registry, live or stale."
    )
    registered.add_metric([], len(workers))
    age = GaugeMetricFamily(
        "underway_worker_heartbeat_age_seconds",
        "Seconds since each registered worker's last heartbeat.",
        labels=["worker", "hostname"],
    )
    busy = GaugeMetricFamily(
        "underway_worker_running_jobs",
        "Jobs each registered worker holds a lease on.",
        labels=["worker", "hostname"],
    )
    slots = GaugeMetricFamily(
        "underway_worker_concurrency",
        "How many jobs each registered worker runs at once.",
        labels=["worker", "hostname"],
    )
    for worker in workers:
        labels = [worker.id, worker.hostname]
        if worker.heartbeat_at is not None:
            age.add_metric(labels, max((now - worker.heartbeat_at).total_seconds(), 0.0))
        busy.add_metric(labels, per_owner.get(worker.id, 0))
        slots.add_metric(labels, worker.concurrency)
    families += [live, registered, age, busy, slots]

    recent = await _window(backend, window)
    size = GaugeMetricFamily(
        "underway_window_jobs", "Jobs the per-task metrics cover (the most recent ones)."
    )
    size.add_metric([], len(recent))
    families.append(size)
    events = ("enqueued", "started", "succeeded", "failed", "retried")
    per_task: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(events, 0))
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    for record in recent:
        key = (record.task_name, record.queue)
        tally = per_task[key]
        tally["enqueued"] += 1
        if record.started_at is not None:
            tally["started"] += 1
        if record.status is JobStatus.SUCCEEDED:
            tally["succeeded"] += 1
        elif record.status in (JobStatus.FAILED, JobStatus.DEAD):
            tally["failed"] += 1
        tally["retried"] += _retries(record)
        if record.is_finished and record.started_at and record.finished_at:
            durations[key].append(max((record.finished_at - record.started_at).total_seconds(), 0))
    descriptions = {
        "enqueued": "Jobs enqueued",
        "started": "Jobs started at least once",
        "succeeded": "Jobs succeeded",
        "failed": "Jobs failed or dead",
        "retried": "Runs that ended in a retry",
    }
    for event in events:
        family = GaugeMetricFamily(
            f"underway_jobs_{event}",
            f"{descriptions[event]}, among the window's jobs, by task and queue.",
            labels=["task", "queue"],
        )
        for (task, queue), tally in sorted(per_task.items()):
            family.add_metric([task, queue], tally[event])
        families.append(family)
    histogram = GaugeHistogramMetricFamily(
        "underway_job_duration_seconds",
        "Run time of the window's finished jobs (their last run), by task and queue.",
        labels=["task", "queue"],
    )
    for key, values in sorted(durations.items()):
        histogram.add_metric(list(key), _bucket_values(values), sum(values))
    families.append(histogram)

    rows = await schedule_rows(schedules, backend, now)
    last = GaugeMetricFamily(
        "underway_schedule_last_tick_timestamp_seconds",
        "When each durable schedule's last claimed tick was due (Unix time).",
        labels=["schedule"],
    )
    upcoming = GaugeMetricFamily(
        "underway_schedule_next_tick_timestamp_seconds",
        "When each durable schedule's next tick is due (Unix time).",
        labels=["schedule"],
    )
    missed = GaugeMetricFamily(
        "underway_schedule_missed_ticks",
        "Ticks that came due and were not claimed (no worker ran the schedule), capped at 100.",
        labels=["schedule"],
    )
    for row in rows:
        if row.last_tick is not None:
            last.add_metric([row.name], row.last_tick.timestamp())
        upcoming.add_metric([row.name], row.next_tick.timestamp())
        missed.add_metric([row.name], row.missed)
    families += [last, upcoming, missed]
    return families


def render(families: list[Metric]) -> bytes:
    """Return the families in Prometheus's text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(families))
    return generate_latest(registry)
