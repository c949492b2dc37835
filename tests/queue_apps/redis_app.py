"""An app for the Redis multi-process and fault tests, run by worker subprocesses.

``python -c "from tests.queue_apps.redis_app import main; main()" CONCURRENCY LEASE`` runs
one worker until SIGTERM, printing ``ready`` once it takes jobs. The environment says
where: ``UNDERWAY_REDIS_APP_URL`` (the store), ``UNDERWAY_REDIS_APP_LOG`` (a file every
run appends a line to, with ``O_APPEND``, so that processes never interleave within a
line) and, when ``UNDERWAY_REDIS_APP_SCHEDULE`` is set, a durable schedule every second.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

from underway import Underway
from underway.task import Task

RECORD = "redis_app.record"
TICK = "redis_app.tick"


def append(path: str, line: str) -> None:
    """Append one line to ``path`` in a single write (atomic among O_APPEND writers)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def make_app(url: str, log: str, *, schedule: bool = False) -> Underway:
    """The app: ``record(n, pause)`` logs ``n pid`` after its pause, ``tick`` ``tick TIME pid``."""
    uw = Underway(url)

    async def record(n: int, pause: float = 0.0) -> int:
        if pause:
            await asyncio.sleep(pause)
        append(log, f"{n} {os.getpid()}\n")
        return n

    uw.task(name=RECORD, retries=5)(record)

    if schedule:

        async def tick() -> None:
            append(log, f"tick {time.time():.6f} {os.getpid()}\n")

        uw.loop(seconds=1, name=TICK)(tick)
    return uw


def record_task(uw: Underway) -> Task[..., int]:
    """The app's ``record`` task, to enqueue with."""
    return uw.tasks[RECORD]


async def serve(uw: Underway, concurrency: int, lease: float) -> None:
    """Run one worker until a signal stops it."""
    worker = uw.worker(concurrency=concurrency, lease=lease)
    running = asyncio.create_task(worker.run(handle_signals=True))
    await worker.started()
    print("ready", flush=True)
    try:
        await running
    finally:
        await uw.close()


def main() -> None:
    """Entry point of a worker subprocess: ``CONCURRENCY LEASE`` on the command line."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    uw = make_app(
        os.environ["UNDERWAY_REDIS_APP_URL"],
        os.environ["UNDERWAY_REDIS_APP_LOG"],
        schedule=bool(os.environ.get("UNDERWAY_REDIS_APP_SCHEDULE")),
    )
    asyncio.run(serve(uw, int(sys.argv[1]), float(sys.argv[2])))
