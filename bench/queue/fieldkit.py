"""What every system of the field benchmark shares inside its runs (``field_runner.py``).

A run of one role gets an :class:`Env`: a fresh directory (``out``) for its records, a
database file path for SQLite, and the private servers' addresses. The tasks of every system
call :func:`record_done` as their last statement, which appends the time to the run's
completion log (``out/done.bin``, 8 bytes a job, one ``write`` on an ``O_APPEND`` file, so
threads, coroutines and forked children of several worker processes can all append to it
safely); the orchestrator watches its size and takes the end of a drain from its largest
time. Latency tasks record their start with :func:`harness.write_stamp` instead.

Timed loops (:func:`time_enqueues`, :func:`paced`) are here so that every system is timed by
the same code; only the call that enqueues differs.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness import Ready, write_stamp

#: The completion log's name in the run's directory, and the format of one record.
DONE_LOG = "done.bin"
RECORD = struct.Struct("<d")
#: How long the job of the saturation workload waits.
SLEEP_S = 0.01
#: The environment variable that tells tasks (and forked children) where the run's records go.
OUT_VAR = "UNDERWAY_BENCH_OUT"


@dataclass(frozen=True, slots=True)
class Env:
    """Where one run keeps its records and finds its store."""

    db: Path
    out: Path
    redis_url: str
    postgres_dsn: str


class FieldSystem(Protocol):
    """One job queue with one configuration, as the field benchmark runs it.

    Every method but ``settings`` and ``versions`` runs in a ``field_runner.py`` process of
    its own, on a store the orchestrator has emptied before the run.
    """

    #: Short key used on command lines and in the JSON.
    key: str
    #: Name shown in tables.
    label: str
    #: "sqlite", "redis" or "postgres".
    store: str
    #: Whether the system has a bulk enqueue API.
    has_bulk: bool
    #: A virtual environment of its own under ``.venv-bench`` ("" for ``.venv-bench``).
    venv: str
    #: Whether one worker process runs jobs concurrently (False: one at a time).
    concurrent: bool

    def settings(self) -> dict[str, Any]:
        """Describe how this system is configured (worker, store, delivery)."""

    def versions(self) -> dict[str, str]:
        """Return the versions of the packages under test, by distribution name."""

    def prepare(self, env: Env) -> None:
        """Set up an empty store once (a schema, say); the runs start from copies of it."""

    def enqueue(self, env: Env, n: int, batch: int) -> dict[str, Any]:
        """Time ``n`` no-op enqueues: one by one when ``batch`` is 0, else ``batch`` per call.

        Returns ``elapsed_s`` and, where the system can count them cheaply, ``stored``.
        """

    def fill(self, env: Env, n: int, kind: str) -> dict[str, Any]:
        """Store ``n`` jobs of ``kind`` ("noop" or "sleep") as fast as possible, untimed."""

    def run_worker(self, env: Env, concurrency: int, ready: Ready) -> dict[str, Any]:
        """Set up one worker process, call ``ready`` (which returns on "go"), then run.

        Returns when the process is told to stop (SIGTERM).
        """

    def produce_latency(self, env: Env, count: int, spacing: float) -> dict[str, Any]:
        """Enqueue ``count`` stamp jobs ``spacing`` seconds apart; return the enqueue times."""


# -- inside the tasks -----------------------------------------------------------------------


@functools.cache
def _done_fd() -> int:
    path = os.path.join(os.environ[OUT_VAR], DONE_LOG)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def record_done() -> None:
    """Append this moment to the run's completion log (call it as a task's last step)."""
    os.write(_done_fd(), RECORD.pack(time.time()))


def record_start(index: int) -> None:
    """Record the start of latency job ``index`` (call it as a task's first step)."""
    started = time.time()
    write_stamp(Path(os.environ[OUT_VAR]), index, started)


def sleep_then_done() -> None:
    """The saturation job for systems that run plain functions in threads."""
    time.sleep(SLEEP_S)
    record_done()


async def async_sleep_then_done() -> None:
    """The saturation job for systems that run coroutines."""
    await asyncio.sleep(SLEEP_S)
    record_done()


def fill_in_threads(n: int, send: Callable[[], object], threads: int = 8) -> None:
    """Call ``send`` ``n`` times from a few threads (untimed fills through a single-job API)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        share = [n // threads + (i < n % threads) for i in range(threads)]
        for future in [pool.submit(_repeat, send, k) for k in share]:
            future.result()


def _repeat(send: Callable[[], object], times: int) -> None:
    for _ in range(times):
        send()


# -- timing ---------------------------------------------------------------------------------


def time_enqueues(
    n: int, batch: int, single: Callable[[], object], bulk: Callable[[int], object] | None
) -> float:
    """Run ``n`` enqueues one by one (``batch`` 0) or ``batch`` per bulk call; return seconds.

    One enqueue first, untimed, opens the connection and warms the code path, so the store
    ends with ``n + 1`` jobs.
    """
    if batch:
        assert bulk is not None
        bulk(1)
    else:
        single()
    began = time.perf_counter()
    if batch:
        assert bulk is not None
        for start in range(0, n, batch):
            bulk(min(batch, n - start))
    else:
        for _ in range(n):
            single()
    return time.perf_counter() - began


async def time_enqueues_async(
    n: int,
    batch: int,
    single: Callable[[], Awaitable[object]],
    bulk: Callable[[int], Awaitable[object]] | None,
) -> float:
    """:func:`time_enqueues` for coroutine APIs: each call awaited before the next."""
    await (bulk(1) if batch and bulk is not None else single())
    began = time.perf_counter()
    if batch:
        assert bulk is not None
        for start in range(0, n, batch):
            await bulk(min(batch, n - start))
    else:
        for _ in range(n):
            await single()
    return time.perf_counter() - began


def paced(count: int, spacing: float, send: Callable[[int], object]) -> dict[str, Any]:
    """Call ``send(index)`` ``count`` times, ``spacing`` s apart; record when each began."""
    enqueued: list[float] = []
    returned: list[float] = []
    began = time.perf_counter()
    for index in range(count):
        wait = began + index * spacing - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        enqueued.append(time.time())
        send(index)
        returned.append(time.time())
    return {"enqueued": enqueued, "returned": returned}


async def paced_async(
    count: int, spacing: float, send: Callable[[int], Awaitable[object]]
) -> dict[str, Any]:
    """:func:`paced` for coroutine APIs."""
    enqueued: list[float] = []
    returned: list[float] = []
    began = time.perf_counter()
    for index in range(count):
        wait = began + index * spacing - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        enqueued.append(time.time())
        await send(index)
        returned.append(time.time())
    return {"enqueued": enqueued, "returned": returned}


# -- worker processes -----------------------------------------------------------------------


async def until_sigterm() -> None:
    """Return once the process gets SIGTERM or SIGINT (handled on the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def sigterm_event() -> threading.Event:
    """An event set on SIGTERM or SIGINT (handlers installed now, on the main thread)."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)
    return stop


async def ready_async(ready: Ready, info: Mapping[str, Any] | None = None) -> None:
    """Call ``ready`` from a thread, so that the event loop keeps serving connections."""
    await asyncio.to_thread(ready, dict(info or {}))


def redis_host_port(url: str) -> tuple[str, int]:
    """The host and port of a ``redis://host:port/db`` URL."""
    rest = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    return host, int(port)


def quiet_logging(*names: str) -> None:
    """Set the named loggers (the peers' own) to WARNING, as a production worker would run."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
