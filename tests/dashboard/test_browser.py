"""The dashboard in headless Chromium, against uvicorn and a worker over a SQLite file.

Screenshots are kept under ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.dashboard.conftest import (
    ARTIFACTS,
    CHROMIUM_ARGS,
    TOKEN,
    LiveServer,
    Tasks,
    chromium_path,
)
from underway import JobStatus
from underway.job import JobRecord


@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium's path; asked for first, so that a skip starts no server."""
    return chromium_path()


@pytest.fixture(scope="module")
def browser_page(chromium: str, live: tuple[LiveServer, Tasks]) -> Iterator[tuple[Page, list[str]]]:
    """A logged-in Chromium page, and the console errors it has logged."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server, _ = live
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        page = context.new_page()
        page.set_default_timeout(10_000)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda dialog: dialog.accept())
        # The first visit shows the login form (with status 401); the token opens the rest.
        response = page.goto(server.url + "/jobs")
        assert response is not None and response.status == 401
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(server.url + "/jobs")
        errors.clear()  # the 401 of the login page is logged as a console error
        yield page, errors
        context.close()
        browser.close()


def wait_for(
    server: LiveServer, job_id: str, check: Callable[[JobRecord], bool], timeout: float = 10.0
) -> JobRecord:
    deadline = time.monotonic() + timeout
    while True:
        record = server.call(_get(server, job_id))
        if check(record):
            return record
        assert time.monotonic() < deadline, f"job {job_id} never got there: {record}"
        time.sleep(0.05)


async def _get(server: LiveServer, job_id: str) -> JobRecord:
    record = await (await server.uw.backend()).get_job(job_id)
    assert record is not None
    return record


def poll_value(
    page: Page, selector: str, check: Callable[[float], bool], timeout: float = 10.0
) -> float:
    """Wait until the value of a progress bar passes ``check`` (the page's CSP forbids the
    string evaluation that ``wait_for_function`` uses)."""
    deadline = time.monotonic() + timeout
    while True:
        value = float(page.locator(selector).evaluate("el => el.value"))
        if check(value):
            return value
        assert time.monotonic() < deadline, f"{selector} stayed at {value}"
        time.sleep(0.05)


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_every_page_loads(
    live: tuple[LiveServer, Tasks], browser_page: tuple[Page, list[str]]
) -> None:
    server, tasks = live
    page, errors = browser_page
    done = server.call(tasks.ok.enqueue(21))
    wait_for(server, done.id, lambda r: r.status is JobStatus.SUCCEEDED)
    pages = {
        "overview": ("/", "Throughput and failure rate"),
        "jobs": ("/jobs", "Purge finished jobs"),
        "job": (f"/jobs/{done.id}", "42"),
        "schedules": ("/schedules", "every-5-min"),
        "workers": ("/workers", "Current jobs"),
        "jobs-filtered": ("/jobs?status=succeeded&queue=default&limit=20", done.id),
    }
    for name, (path, text) in pages.items():
        response = page.goto(server.url + path)
        assert response is not None and response.status == 200, path
        assert text in page.inner_text("main"), path
        shot(page, name)
    # The overview's chart and live worker are drawn.
    page.goto(server.url + "/")
    assert page.locator("svg.chart rect.ok").count() >= 1
    assert page.locator("tr.live").count() == 1
    # Look-up by id from the header.
    page.fill("header input[name=id]", done.id)
    page.press("header input[name=id]", "Enter")
    page.wait_for_url(f"{server.url}/jobs/{done.id}")
    assert errors == []  # no script error, no content-security-policy violation


def test_a_dead_job_is_retried(
    live: tuple[LiveServer, Tasks], browser_page: tuple[Page, list[str]]
) -> None:
    server, tasks = live
    page, errors = browser_page
    job = server.call(tasks.flaky.enqueue())
    wait_for(server, job.id, lambda r: r.status is JobStatus.DEAD)
    page.goto(f"{server.url}/jobs/{job.id}")
    assert "RuntimeError: first run fails" in page.inner_text("main")
    shot(page, "job-dead")
    page.click("#retry")
    page.wait_for_url(f"{server.url}/jobs/{job.id}?done=retried")
    assert "The job was queued again." in page.inner_text("main")
    record = wait_for(server, job.id, lambda r: r.status is JobStatus.SUCCEEDED)
    assert tasks.flaky_runs == [1, 2]
    assert record.attempts == 1
    # The page follows the job by itself until it has succeeded.
    page.wait_for_selector(".badge.s-succeeded")
    assert '"second run worked"' in page.inner_text("main")
    shot(page, "job-retried")
    assert errors == []


def test_a_running_job_is_cancelled(
    live: tuple[LiveServer, Tasks], browser_page: tuple[Page, list[str]]
) -> None:
    server, tasks = live
    page, errors = browser_page
    job = server.call(tasks.slow.enqueue(400, 0.05))
    wait_for(server, job.id, lambda r: r.status is JobStatus.RUNNING and (r.progress or 0) > 0)
    page.goto(f"{server.url}/jobs/{job.id}")
    page.click("#cancel")  # confirmed by the dialog handler
    page.wait_for_url(f"{server.url}/jobs/{job.id}?done=cancel-requested")
    record = wait_for(server, job.id, lambda r: r.status is JobStatus.CANCELLED)
    assert record.progress is not None and record.progress < 1
    page.wait_for_selector(".badge.s-cancelled")
    shot(page, "job-cancelled")
    assert errors == []


def test_progress_moves_without_reloading(
    live: tuple[LiveServer, Tasks], browser_page: tuple[Page, list[str]]
) -> None:
    server, tasks = live
    page, errors = browser_page
    job = server.call(tasks.slow.enqueue(100, 0.1))
    wait_for(server, job.id, lambda r: (r.progress or 0) > 0)
    # On the overview, the running job's bar moves (it polls every 2 s).
    page.goto(server.url + "/")
    page.evaluate("window.__sameDocument = true")
    selector = f"progress[data-live-progress='progress:{job.id}']"
    start = float(page.locator(selector).evaluate("el => el.value"))
    poll_value(page, selector, lambda v: v > start)
    assert page.evaluate("window.__sameDocument") is True  # moved by the poller, no reload
    shot(page, "overview-running")
    # On the job's page too, with its step message.
    page.goto(f"{server.url}/jobs/{job.id}")
    page.evaluate("window.__sameDocument = true")
    first = float(page.locator(".bigprogress progress").evaluate("el => el.value"))
    later = poll_value(page, ".bigprogress progress", lambda v: v > first + 0.05)
    assert later > first
    text = page.inner_text(".bigprogress .ptext")
    assert re.fullmatch(r"\d+% step \d+ of 100", text), text
    assert page.evaluate("window.__sameDocument") is True
    shot(page, "job-progress")
    server.call(server.uw.cancel_job(job.id))
    wait_for(server, job.id, lambda r: r.status is JobStatus.CANCELLED)
    assert errors == []
