"""An app for worker subprocesses: ``underway worker tests.queue_apps.basic:uw``.

Its tasks append ``EVENT JOB_ID PID`` lines to the file named by ``UNDERWAY_TEST_LOG``
(with O_APPEND, so lines from several processes never interleave).
"""

from __future__ import annotations

import asyncio
import os
import time

import underway
from tests.queue_apps.harness import append_line, read_lines
from underway import Underway

uw = Underway(os.environ["UNDERWAY_URL"])
LOG = os.environ.get("UNDERWAY_TEST_LOG", os.devnull)


def record(event: str) -> str:
    job_id = underway.current_job().id
    append_line(LOG, f"{event} {job_id} {os.getpid()}")
    return job_id


def ran_before(job_id: str) -> bool:
    return any(line.split()[:2] == ["start", job_id] for line in read_lines(LOG)[:-1])


@uw.task(retries=3)
async def nap(seconds: float) -> str:
    """Sleep on the event loop; log its start and end."""
    job_id = record("start")
    await asyncio.sleep(seconds)
    record("end")
    return job_id


@uw.task(retries=3)
def sync_nap(seconds: float) -> str:
    """Sleep in a worker thread; log its start and end."""
    job_id = record("start")
    time.sleep(seconds)
    record("end")
    return job_id


@uw.task(retries=3)
async def nap_once(first: float, again: float) -> str:
    """Sleep ``first`` seconds on the first run of the job, ``again`` on later runs."""
    job_id = record("start")
    await asyncio.sleep(again if ran_before(job_id) else first)
    record("end")
    return job_id


@uw.task(retries=5)
async def log_id(n: int) -> int:
    """The crash test's job: record that it ran, take a moment, return its number."""
    record("run")
    await asyncio.sleep(0.005)
    return n


@uw.task(retries=0)
async def fail(message: str) -> None:
    """Fail at once, for good."""
    raise RuntimeError(message)


@uw.task
async def halfway(message: str) -> None:
    """Report progress 0.5, then wait to be cancelled."""
    underway.current_job().progress(0.5, message)
    record("start")
    await asyncio.sleep(60)
