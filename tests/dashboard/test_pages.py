"""Pages, JSON endpoints, the purge action, the chart and the ``underway dashboard`` command."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.dashboard.conftest import TOKEN, Tasks, run_until_idle
from tests.subprocess_helpers import Child
from underway import JobStatus, Underway
from underway.backends import backend_from_url
from underway.cli import main
from underway.dashboard.stats import PAGE, chart, recent_finished
from underway.job import JobRecord, NewJob, Outcome, Release

UTC = timezone.utc


def finished(status: JobStatus, at: datetime) -> JobRecord:
    return JobRecord(
        id=f"{at.timestamp()}-{status.value}",
        task_name="t",
        queue="q",
        payload=b"{}",
        status=status,
        priority=0,
        attempts=1,
        max_attempts=1,
        enqueued_at=at - timedelta(seconds=1),
        scheduled_at=at - timedelta(seconds=1),
        started_at=at - timedelta(seconds=1),
        finished_at=at,
    )


def test_the_chart_counts_finished_jobs_per_minute_over_the_last_hour() -> None:
    now = datetime(2026, 1, 1, 12, 30, 20, tzinfo=UTC)
    records = [
        finished(JobStatus.SUCCEEDED, now - timedelta(seconds=5)),
        finished(JobStatus.SUCCEEDED, now - timedelta(seconds=10)),
        finished(JobStatus.DEAD, now - timedelta(seconds=15)),
        finished(JobStatus.FAILED, now - timedelta(minutes=30)),
        finished(JobStatus.SUCCEEDED, now - timedelta(minutes=61)),  # too old
    ]
    drawn = chart(records, now)
    assert len(drawn.bars) == 60
    last = drawn.bars[-1]
    assert (last.succeeded, last.failed) == (2, 1)
    assert last.start == datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    assert last.failure_rate == pytest.approx(1 / 3)
    assert drawn.bars[-31].failed == 1
    assert (drawn.total_succeeded, drawn.total_failed) == (2, 2)
    assert drawn.y_max == 5  # 3 rounded up to a nice scale
    # The failed-only bar reaches the middle of the plot; its failure rate point the top.
    middle = drawn.bars[-31]
    assert middle.fail_height == pytest.approx((drawn.plot_bottom - drawn.plot_top) / 5)
    assert len(drawn.rate_points.split()) == 2
    empty = chart([], now)
    assert empty.failure_rate is None and empty.rate_points == ""


async def test_purge_deletes_the_chosen_finished_jobs(
    uw: Underway, tasks: Tasks, client: httpx.AsyncClient
) -> None:
    await tasks.ok.enqueue(1)
    await tasks.boom.enqueue("x")
    await run_until_idle(uw)
    waiting = await tasks.ok.enqueue(2)
    bad = await client.post("/purge", data={"older_than": "1y"})
    assert bad.status_code == 400
    unfinished = await client.post("/purge", data={"older_than": "0s", "status": "queued"})
    assert unfinished.status_code == 400
    response = await client.post("/purge", data={"older_than": "0s", "status": "succeeded"})
    assert response.status_code == 303
    assert response.headers["location"] == "/jobs?done=purged&n=1"
    counts = (await (await uw.backend()).count_jobs())["default"]
    assert counts == {JobStatus.DEAD: 1, JobStatus.QUEUED: 1}
    page = await client.get(response.headers["location"])
    assert "Purged 1 finished job(s)." in page.text
    assert waiting.id in page.text


async def test_json_endpoints_feed_the_live_updates(
    uw: Underway, tasks: Tasks, client: httpx.AsyncClient
) -> None:
    job = await tasks.slow.enqueue(3, 0.0)
    backend = await uw.backend()
    (record,) = await backend.acquire(["slow"], "w1", 1, timedelta(seconds=30))
    assert await backend.set_progress(record.lease, 0.5, "half <way>")
    data = (await client.get(f"/api/jobs/{job.id}")).json()
    assert data["values"]["progress"] == 0.5
    assert data["values"]["progress-text"] == "50% half <way>"
    assert data["values"]["status"] == "running"
    assert data["shape"] == "running:False:1"
    overview = (await client.get("/api/overview")).json()
    assert overview["values"]["count:slow:running"] == 1
    assert overview["values"][f"progress:{job.id}"] == 0.5
    assert overview["values"]["running-total"] == 1
    page = await client.get("/")
    assert f'data-shape="{overview["shape"]}"' in page.text.replace("&#34;", '"')
    assert "half &lt;way&gt;" in page.text


async def test_the_schedules_page_counts_missed_ticks(
    uw: Underway, client: httpx.AsyncClient
) -> None:
    backend = await uw.backend()
    now = datetime.now(UTC)
    aligned = datetime.fromtimestamp(now.timestamp() // 300 * 300, UTC)
    assert await backend.claim_schedule_tick("every-5-min", aligned - timedelta(minutes=20))
    page = await client.get("/schedules")
    missed = re.search(r"(\d+) missed", page.text)
    assert missed is not None and int(missed.group(1)) in (3, 4)
    assert re.search(r"2[0-5] min ago", page.text)
    metrics = await client.get("/metrics")
    assert re.search(
        r'underway_schedule_missed_ticks\{schedule="every-5-min"\} [34]\.0', metrics.text
    )


async def test_the_workers_page_shows_heartbeats_and_current_jobs(
    uw: Underway, tasks: Tasks, client: httpx.AsyncClient
) -> None:
    job = await tasks.slow.enqueue(1000, 0.01)
    worker = uw.worker(queues=["slow"], schedules=False, poll=0.05, lease=2.0)
    running = asyncio.create_task(worker.run())
    for _ in range(200):
        record = await (await uw.backend()).get_job(job.id)
        if record is not None and record.progress:
            break
        await asyncio.sleep(0.02)
    page = await client.get("/workers")
    worker.kill()
    await running
    assert worker.id in page.text
    assert f"/jobs/{job.id}" in page.text
    assert "1/10" in page.text  # one running job of ten slots
    assert "stale" not in page.text.split("<tbody>")[1].split("</tbody>")[0]


def test_the_cli_refuses_insecure_mode_off_loopback() -> None:
    result = CliRunner().invoke(
        main, ["dashboard", "tests.queue_apps.basic:uw", "--insecure-no-auth", "--host", "0.0.0.0"]
    )
    assert result.exit_code == 2
    assert "allowed only with --host 127.0.0.1" in result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("given", [False, True])
def test_underway_dashboard_serves_with_a_printed_or_given_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: bool
) -> None:
    monkeypatch.setenv("UNDERWAY_URL", f"sqlite:///{tmp_path / 'q.db'}")
    if given:
        monkeypatch.setenv("UNDERWAY_DASHBOARD_TOKEN", TOKEN)
    else:
        monkeypatch.delenv("UNDERWAY_DASHBOARD_TOKEN", raising=False)
    port = _free_port()
    child = Child("-m", "underway", "dashboard", "tests.queue_apps.basic:uw", "--port", str(port))
    try:
        child.wait_for("Uvicorn running on", timeout=20)
        output = "\n".join(child.lines)
        assert f"on http://127.0.0.1:{port}/" in output
        match = re.search(r"Access token \(generated.*\): (\S+)", output)
        if given:
            assert match is None
            token = TOKEN
        else:
            assert match is not None
            token = match.group(1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/metrics").status_code == 401
            wrong = client.get("/metrics", headers={"authorization": "Bearer x" + token})
            assert wrong.status_code == 401
            ok = client.get("/metrics", headers={"authorization": f"Bearer {token}"})
            assert ok.status_code == 200
            assert "underway_workers_live 0.0" in ok.text
    finally:
        child.signal(signal.SIGTERM)
        code, output = child.finish()
    assert code in (0, -signal.SIGTERM), output  # uvicorn re-raises the signal after a clean exit
    assert "Application shutdown complete" in output


async def test_the_chart_marks_minutes_it_could_not_read_fully(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    clock = [now]
    backend = backend_from_url(f"sqlite:///{tmp_path / 'busy.db'}", clock=lambda: clock[0])
    await backend.open()
    # 600 jobs, one finishing every 5 s over the last 50 minutes: more than one page.
    clock[0] = now - timedelta(minutes=51)
    await backend.enqueue_many([NewJob("t", b"{}") for _ in range(600)])
    records = await backend.acquire(["default"], "w", 600, timedelta(hours=2))
    for i in range(0, 600, 10):  # in batches of ten that finish together
        clock[0] = now - timedelta(seconds=5 * (600 - i))
        batch = [Release(r.lease, Outcome.success(b"null")) for r in records[i : i + 10]]
        assert await backend.release("w", batch) == [True] * 10
    clock[0] = now
    read = await recent_finished(backend, since=now - timedelta(hours=1), cap=PAGE)
    assert len(read.records) == PAGE  # the newest page only
    assert read.complete_from is not None
    assert now - read.complete_from == pytest.approx(
        timedelta(seconds=5 * PAGE), abs=timedelta(seconds=50)
    )
    drawn = chart(read.records, now, complete_from=read.complete_from)
    partial = [bar for bar in drawn.bars if bar.partial]
    complete = [bar for bar in drawn.bars if not bar.partial]
    assert partial and complete
    assert all(bar.succeeded == 0 and bar.failure_rate is None for bar in partial)
    assert complete[0].start >= read.complete_from
    assert drawn.total_succeeded == sum(
        1 for r in read.records if r.finished_at and r.finished_at >= complete[0].start
    )
    everything = await recent_finished(backend, since=now - timedelta(hours=1))
    assert everything.complete_from is None
    assert len(everything.records) == 600
    assert chart(everything.records, now).total_succeeded == 600
    await backend.close()
