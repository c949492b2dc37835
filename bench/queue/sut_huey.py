"""Huey's SQLite storage (``SqliteHuey``) with its defaults, for the queue benchmarks.

The tasks are plain functions (Huey does not run coroutines): a no-op, and one that records
when it started. The worker is Huey's consumer with ``workers=10, worker_type="thread"`` and
every other option at its default, run in-process through ``huey.create_consumer`` (what
``huey_consumer`` does, without the per-task INFO log lines it turns on).

Huey is imported by name inside the functions: it is installed only in the bench venv, and
the main venv's mypy must not need it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import threading
import time
from pathlib import Path
from typing import Any

from harness import Ready, write_marker, write_stamp

WORKERS = 10
#: The consumer's options besides the defaults.
CONSUMER = {"workers": WORKERS, "worker_type": "thread"}
DONE = "drained.json"


class _App:
    def __init__(self, db: Path, out: Path | None) -> None:
        api: Any = importlib.import_module("huey")
        self.huey: Any = api.SqliteHuey(name="bench", filename=str(db))

        def noop() -> None:
            return None

        def stamp(index: int) -> None:
            started = time.time()
            if out is not None:
                write_stamp(out, index, started)

        self.noop: Any = self.huey.task(name="noop")(noop)
        self.stamp: Any = self.huey.task(name="stamp")(stamp)

    def connect(self) -> None:
        """Open the storage's connection now, so that no timing includes it."""
        self.huey.storage.sql("SELECT 1", results=True)

    def stored(self) -> int:
        count: int = self.huey.storage.queue_size()
        return count


class HueySQLite:
    """Huey 3's ``SqliteHuey``, storage and consumer at their defaults but for the workers."""

    key = "huey"
    label = "Huey"
    has_bulk = False

    def settings(self) -> dict[str, Any]:
        """See :meth:`harness.System.settings`."""
        return {
            "store": "SqliteHuey(filename=<file>): SqliteStorage defaults: journal_mode=wal, "
            "fsync=None (synchronous left at SQLite's default; see the pragmas measured), "
            "cache_mb=8, timeout 5 s; one connection per process shared by its threads "
            "under a lock; every write one BEGIN EXCLUSIVE transaction",
            "worker": "huey.create_consumer(workers=10, worker_type='thread'); defaults "
            "otherwise: initial_delay 0.1 s, backoff 1.15, max_delay 10 s (each idle thread "
            "polls after its delay, which grows ×1.15 per empty poll and resets on a job), "
            "scheduler_interval 1 s, periodic on, health checks on; logging at WARNING "
            "(huey_consumer would log every task at INFO)",
            "tasks": "plain functions, retries=0 (default); results=True but a None result "
            "is not stored (store_none=False)",
            "delivery": "at-most-once: a job is deleted from the queue when a thread takes "
            "it, before it runs; a crash loses the jobs in flight",
            "enqueue_single": "noop() in a loop, one job per transaction",
            "enqueue_bulk": "n/a: Huey has no bulk enqueue (enqueueing a group enqueues "
            "its tasks one by one)",
            "fill": "the INSERT SqliteStorage.enqueue runs, executemany'd in one transaction "
            "with messages from huey.serialize_task(noop.s())",
            "drain_end": "time.time() in a SIGNAL_COMPLETE receiver when the last job "
            "completed (a counter under a lock; written to a file once)",
        }

    def versions(self) -> dict[str, str]:
        """See :meth:`harness.System.versions`."""
        return {"huey": importlib.metadata.version("huey")}

    def enqueue_single(self, db: Path, n: int) -> dict[str, Any]:
        """See :meth:`harness.System.enqueue_single`."""
        app = _App(db, None)
        app.connect()
        noop = app.noop
        began = time.perf_counter()
        for _ in range(n):
            noop()
        elapsed = time.perf_counter() - began
        return {"elapsed_s": elapsed, "stored": app.stored()}

    def enqueue_bulk(self, db: Path, n: int, batch: int) -> dict[str, Any]:
        """See :meth:`harness.System.enqueue_bulk`."""
        raise NotImplementedError("Huey has no bulk enqueue API.")

    def fill(self, db: Path, n: int) -> dict[str, Any]:
        """See :meth:`harness.System.fill`."""
        app = _App(db, None)
        huey = app.huey
        rows = [(huey.name, huey.serialize_task(app.noop.s()), 0) for _ in range(n)]
        with huey.storage.db(commit=True) as cursor:
            cursor.executemany("INSERT INTO task (queue, data, priority) VALUES (?, ?, ?)", rows)
        return {"stored": app.stored()}

    def run_worker(self, db: Path, out: Path, expect: int, ready: Ready) -> dict[str, Any]:
        """See :meth:`harness.System.run_worker`."""
        signals: Any = importlib.import_module("huey.signals")
        app = _App(db, out)
        huey = app.huey
        completed = 0
        lock = threading.Lock()

        def on_complete(signal: str, task: Any, *args: Any, **kwargs: Any) -> None:
            nonlocal completed
            with lock:
                completed += 1
                if completed == expect:
                    write_marker(out / DONE, {"t_end": time.time(), "completed": completed})

        if expect:
            huey.signal(signals.SIGNAL_COMPLETE)(on_complete)
        consumer = huey.create_consumer(**CONSUMER)
        pragmas = {
            name: huey.storage.sql(f"PRAGMA {name}", results=True)[0][0]
            for name in ("journal_mode", "synchronous", "busy_timeout", "cache_size")
        }
        ready({"pragmas": pragmas})
        t_start = time.time()
        consumer.run()
        return {"t_start": t_start, "completed": completed, "left_in_queue": app.stored()}

    def produce_latency(self, db: Path, count: int, spacing: float) -> dict[str, Any]:
        """See :meth:`harness.System.produce_latency`."""
        app = _App(db, None)
        app.connect()
        stamp = app.stamp
        enqueued: list[float] = []
        returned: list[float] = []
        began = time.perf_counter()
        for index in range(count):
            wait = began + index * spacing - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            enqueued.append(time.time())
            stamp(index)
            returned.append(time.time())
        return {"enqueued": enqueued, "returned": returned}

    def probe(self, db: Path, out: Path, n: int) -> _Probe:
        """See :meth:`harness.System.probe`."""
        return _Probe(out / DONE)


class _Probe:
    """Looks for the file the worker's SIGNAL_COMPLETE receiver writes after the last job."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def poll(self) -> float | None:
        if not self.path.exists():
            return None
        t_end: float = json.loads(self.path.read_text())["t_end"]
        return t_end

    def close(self) -> None:
        pass
