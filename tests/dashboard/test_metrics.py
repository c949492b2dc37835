"""The Prometheus endpoint, parsed with the Prometheus text parser and checked against the store."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.dashboard.conftest import Tasks, run_until_idle
from underway import JobStatus, Underway
from underway.dashboard.metrics import DURATION_BUCKETS, collect
from underway.job import Outcome, Release


def parse(text: str) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    matches = [s.value for s in samples.get(name, []) if s.labels == labels]
    assert len(matches) == 1, f"{name}{labels}: {matches} in {samples.get(name)}"
    return matches[0]


async def test_the_metrics_endpoint_reports_what_the_store_holds(
    uw: Underway, tasks: Tasks, client: httpx.AsyncClient
) -> None:
    for i in range(3):
        await tasks.ok.enqueue(i)
    await tasks.boom.enqueue("x")
    await tasks.flaky.enqueue()
    await run_until_idle(uw)
    for i in range(2):
        await tasks.ok.enqueue(10 + i)
    await tasks.slow.enqueue(1, 0.0)
    backend = await uw.backend()

    # A worker on a queue with no jobs is live while the scrape runs.
    idle = uw.worker(queues=["elsewhere"], schedules=False, poll=0.05, concurrency=3)
    running = asyncio.create_task(idle.run())
    await idle.started()
    response = await client.get("/metrics")
    idle.stop()
    await running

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = parse(response.text)
    counts = await backend.count_jobs()
    assert counts["default"][JobStatus.SUCCEEDED] == 3
    for queue, by_status in counts.items():
        for status in JobStatus:
            reported = value(samples, "underway_jobs", queue=queue, status=status.value)
            assert reported == by_status.get(status, 0), (queue, status)
    assert value(samples, "underway_queue_depth", queue="default") == 2
    assert value(samples, "underway_queue_depth", queue="slow") == 1
    assert value(samples, "underway_workers_live") == 1
    assert value(samples, "underway_workers_registered") == 1
    labels = {"worker": idle.id, "hostname": idle.id.split(":")[0]}
    assert value(samples, "underway_worker_concurrency", **labels) == 3
    assert value(samples, "underway_worker_running_jobs", **labels) == 0
    assert 0 <= value(samples, "underway_worker_heartbeat_age_seconds", **labels) < 30

    ok = {"task": "ok", "queue": "default"}
    assert value(samples, "underway_window_jobs") == 8
    assert value(samples, "underway_jobs_enqueued", **ok) == 5
    assert value(samples, "underway_jobs_started", **ok) == 3
    assert value(samples, "underway_jobs_succeeded", **ok) == 3
    assert value(samples, "underway_jobs_failed", **ok) == 0
    assert value(samples, "underway_jobs_failed", task="boom", queue="default") == 1
    assert value(samples, "underway_jobs_failed", task="flaky", queue="default") == 1
    assert value(samples, "underway_jobs_enqueued", task="slow", queue="slow") == 1
    assert value(samples, "underway_jobs_started", task="slow", queue="slow") == 0
    # Three ok runs, each far below the largest bucket bound.
    buckets = samples["underway_job_duration_seconds_bucket"]
    ok_buckets = {s.labels["le"]: s.value for s in buckets if s.labels["task"] == "ok"}
    assert ok_buckets["+Inf"] == 3
    assert ok_buckets[repr(DURATION_BUCKETS[-1])] == 3
    assert list(ok_buckets.values()) == sorted(ok_buckets.values())  # cumulative
    assert value(samples, "underway_job_duration_seconds_gcount", **ok) == 3
    assert 0 <= value(samples, "underway_job_duration_seconds_gsum", **ok) < 3

    schedule = {"schedule": "every-5-min"}
    next_tick = value(samples, "underway_schedule_next_tick_timestamp_seconds", **schedule)
    assert 0 < next_tick - datetime.now(timezone.utc).timestamp() <= 300
    assert value(samples, "underway_schedule_missed_ticks", **schedule) == 0
    assert "underway_schedule_last_tick_timestamp_seconds" not in samples  # never fired


async def test_retries_and_a_window_of_recent_jobs(uw: Underway, tasks: Tasks) -> None:
    backend = await uw.backend()
    for i in range(4):
        await tasks.ok.enqueue(i)
    # The oldest job runs once and ends in a retry, as a worker would record it.
    (record,) = await backend.acquire(["default"], "w", 1, timedelta(seconds=5))
    await backend.release(
        "w", [Release(record.lease, Outcome.retry(datetime.now(timezone.utc), "E: x"))]
    )
    families = await collect(backend, {}, now=datetime.now(timezone.utc), window=2)
    by_name = {f.name: f for f in families}
    assert by_name["underway_window_jobs"].samples[0].value == 2
    enqueued = by_name["underway_jobs_enqueued"].samples
    assert [s.value for s in enqueued] == [2]
    full = await collect(backend, {}, now=datetime.now(timezone.utc))
    retried = {f.name: f for f in full}["underway_jobs_retried"].samples
    assert [s.value for s in retried] == [1]
    with pytest.raises(ValueError, match="window"):
        await collect(backend, {}, now=datetime.now(timezone.utc), window=-1)
    await uw.close()
