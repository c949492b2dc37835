"""A durable schedule for worker subprocesses: ``underway worker tests.queue_apps.ticking:uw``.

``tick`` runs once per whole second of the epoch, however many workers run it; each run
appends ``tick JOB_ID PID`` to the file named by ``UNDERWAY_TEST_LOG``.
"""

from __future__ import annotations

import os

import underway
from tests.queue_apps.harness import append_line
from underway import Underway

uw = Underway(os.environ["UNDERWAY_URL"])
LOG = os.environ.get("UNDERWAY_TEST_LOG", os.devnull)


@uw.loop(seconds=1)
async def tick() -> None:
    append_line(LOG, f"tick {underway.current_job().id} {os.getpid()}")
