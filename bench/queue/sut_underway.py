"""underway on its SQLite backend, as shipped, for the queue benchmarks.

The tasks are ``async def`` functions: a no-op, and one that records when it started. The
worker is ``Underway.worker(concurrency=10, lease=10)`` with every other setting at its
default; the store is ``sqlite:///<file>`` (WAL, ``synchronous=FULL``, idle workers poll
every 0.2 s for jobs enqueued by other processes).

underway is imported inside the functions: the orchestrator imports this module only for
:meth:`UnderwaySQLite.probe`, and the runs import underway from the snapshot on their path.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from harness import Ready, write_stamp

if TYPE_CHECKING:
    from underway import Task, Underway

CONCURRENCY = 10
LEASE_S = 10.0


@dataclass(frozen=True, slots=True)
class _App:
    uw: Underway
    noop: Task[[], None]
    stamp: Task[[int], None]


class UnderwaySQLite:
    """underway's SQLite backend; ``url_options`` are appended to the URL as a query."""

    key = "underway"
    label = "underway"
    has_bulk = True

    def __init__(self, url_options: str = "") -> None:
        self.url_options = url_options

    def url(self, db: Path) -> str:
        """The store's URL for a database file."""
        query = f"?{self.url_options}" if self.url_options else ""
        return f"sqlite:///{db}{query}"

    def settings(self) -> dict[str, Any]:
        """See :meth:`harness.System.settings`."""
        return {
            "store": "sqlite:///<file>" + (f"?{self.url_options}" if self.url_options else ""),
            "backend": "SQLiteBackend as shipped: WAL, synchronous=FULL, busy_timeout 5 s, "
            "poll_interval 0.05 s (idle workers look for other processes' jobs that often); "
            "every write one BEGIN IMMEDIATE transaction",
            "worker": f"Underway.worker(concurrency={CONCURRENCY}, lease={LEASE_S:g}); "
            "heartbeat lease/4, poll 1 s, asyncio event loop (no uvloop), SQLite on one "
            "dedicated thread",
            "tasks": "async def, retries=3 (default); the result (None) is stored",
            "delivery": "at-least-once: jobs are leased, renewed by heartbeat, and "
            "acknowledged after the function returns (outcomes released in batches)",
            "enqueue_single": "await noop.enqueue() in a loop, one job per transaction",
            "enqueue_bulk": "await noop.enqueue_many([((), {})] * batch), one transaction per call",
            "fill": "enqueue_many in batches of 1,000",
            "drain_end": "max(finished_at) of the jobs, read once all have succeeded "
            "(the worker's clock when it recorded the last outcome)",
        }

    def versions(self) -> dict[str, str]:
        """See :meth:`harness.System.versions`."""
        return {"underway": importlib.metadata.version("underway")}

    def _app(self, db: Path, out: Path | None = None) -> _App:
        from underway import Underway

        uw = Underway(self.url(db))

        @uw.task(name="bench.noop")
        async def noop() -> None:
            return None

        @uw.task(name="bench.stamp")
        async def stamp(index: int) -> None:
            started = time.time()
            if out is not None:
                write_stamp(out, index, started)

        return _App(uw, noop, stamp)

    @staticmethod
    async def _stored(uw: Underway) -> int:
        backend = await uw.backend()
        counts = await backend.count_jobs()
        return sum(n for per_status in counts.values() for n in per_status.values())

    def enqueue_single(self, db: Path, n: int) -> dict[str, Any]:
        """See :meth:`harness.System.enqueue_single`."""

        async def main() -> dict[str, Any]:
            app = self._app(db)
            async with app.uw:
                noop = app.noop
                began = time.perf_counter()
                for _ in range(n):
                    await noop.enqueue()
                elapsed = time.perf_counter() - began
                stored = await self._stored(app.uw)
            return {"elapsed_s": elapsed, "stored": stored, **_where()}

        return asyncio.run(main())

    def enqueue_bulk(self, db: Path, n: int, batch: int) -> dict[str, Any]:
        """See :meth:`harness.System.enqueue_bulk`."""

        async def main() -> dict[str, Any]:
            app = self._app(db)
            async with app.uw:
                noop = app.noop
                began = time.perf_counter()
                for start in range(0, n, batch):
                    await noop.enqueue_many([((), {})] * min(batch, n - start))
                elapsed = time.perf_counter() - began
                stored = await self._stored(app.uw)
            return {"elapsed_s": elapsed, "stored": stored, **_where()}

        return asyncio.run(main())

    def fill(self, db: Path, n: int) -> dict[str, Any]:
        """See :meth:`harness.System.fill`."""
        return self.enqueue_bulk(db, n, 1000)

    def run_worker(self, db: Path, out: Path, expect: int, ready: Ready) -> dict[str, Any]:
        """See :meth:`harness.System.run_worker`."""

        async def main() -> dict[str, Any]:
            app = self._app(db, out)
            async with app.uw:
                backend: Any = cast(Any, await app.uw.backend())
                pragmas = await backend._call(_pragmas)
                worker = app.uw.worker(concurrency=CONCURRENCY, lease=LEASE_S)
                await asyncio.to_thread(ready, {"pragmas": pragmas, **_where()})
                t_start = time.time()
                await worker.run(handle_signals=True)
            return {"t_start": t_start, "counts": dict(worker.counts)}

        return asyncio.run(main())

    def produce_latency(self, db: Path, count: int, spacing: float) -> dict[str, Any]:
        """See :meth:`harness.System.produce_latency`."""

        async def main() -> dict[str, Any]:
            app = self._app(db)
            enqueued: list[float] = []
            returned: list[float] = []
            async with app.uw:
                stamp = app.stamp
                began = time.perf_counter()
                for index in range(count):
                    wait = began + index * spacing - time.perf_counter()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    enqueued.append(time.time())
                    await stamp.enqueue(index)
                    returned.append(time.time())
            return {"enqueued": enqueued, "returned": returned, **_where()}

        return asyncio.run(main())

    def probe(self, db: Path, out: Path, n: int) -> _Probe:
        """See :meth:`harness.System.probe`."""
        return _Probe(db, n)


class _Probe:
    """Counts succeeded jobs with a read of its own (WAL: it never blocks the worker)."""

    def __init__(self, db: Path, n: int) -> None:
        self.n = n
        self.conn = sqlite3.connect(db, isolation_level=None)

    def poll(self) -> float | None:
        (done,) = self.conn.execute(
            "SELECT count(*) FROM jobs WHERE queue = 'default' AND status = 'succeeded'"
        ).fetchone()
        if done < self.n:
            return None
        (last,) = self.conn.execute("SELECT max(finished_at) FROM jobs").fetchone()
        return float(last) / 1e6

    def close(self) -> None:
        self.conn.close()


def _pragmas(conn: sqlite3.Connection) -> dict[str, Any]:
    return {
        name: conn.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ("journal_mode", "synchronous", "busy_timeout", "cache_size")
    }


def _where() -> dict[str, Any]:
    module = sys.modules["underway"]
    return {"module_file": module.__file__}
