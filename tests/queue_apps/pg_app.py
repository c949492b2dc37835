"""An app for the PostgreSQL multi-process and fault tests, run by worker subprocesses.

``python -c "from tests.queue_apps.pg_app import main; main()" CONCURRENCY LEASE`` runs one
worker until SIGTERM, printing ``ready`` once it takes jobs. The environment says where:
``UNDERWAY_PG_APP_URL`` (the store), ``UNDERWAY_PG_APP_LOG`` (a file every run appends a
line to, with ``O_APPEND`` so that processes never interleave within a line) and, when
``UNDERWAY_PG_APP_SCHEDULE`` is set, a durable schedule ``pg_app.tick`` every second.
"""

from __future__ import annotations

import asyncio
import os
import sys

from underway import Underway
from underway.task import Task

RECORD = "pg_app.record"
TICK = "pg_app.tick"


def append(path: str, line: str) -> None:
    """Append one line to ``path`` in a single write (atomic among O_APPEND writers)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def make_app(url: str, log: str, *, schedule: bool = False) -> Underway:
    """The app: ``pg_app.record(n, pause)`` logs ``n pid``; ``pg_app.tick`` logs ``tick pid``."""
    uw = Underway(url)

    async def record(n: int, pause: float = 0.0) -> None:
        if pause:
            await asyncio.sleep(pause)
        append(log, f"{n} {os.getpid()}\n")

    uw.task(name=RECORD)(record)

    if schedule:

        async def tick() -> None:
            append(log, f"tick {os.getpid()}\n")

        uw.loop(seconds=1, name=TICK)(tick)
    return uw


def record_task(uw: Underway) -> Task[..., None]:
    """The app's ``pg_app.record`` task, to enqueue with."""
    return uw.tasks[RECORD]


async def serve(uw: Underway, concurrency: int, lease: float) -> None:
    """Run one worker until a signal stops it."""
    worker = uw.worker(concurrency=concurrency, lease=lease, poll=0.5)
    running = asyncio.create_task(worker.run(handle_signals=True))
    await worker.started()
    print("ready", flush=True)
    try:
        await running
    finally:
        await uw.close()


def main() -> None:
    """Entry point of a worker subprocess: ``CONCURRENCY LEASE`` on the command line."""
    uw = make_app(
        os.environ["UNDERWAY_PG_APP_URL"],
        os.environ["UNDERWAY_PG_APP_LOG"],
        schedule=bool(os.environ.get("UNDERWAY_PG_APP_SCHEDULE")),
    )
    asyncio.run(serve(uw, int(sys.argv[1]), float(sys.argv[2])))
