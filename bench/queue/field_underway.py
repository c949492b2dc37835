"""underway on each of its three stores, as shipped, for the field benchmark.

underway runs from a venv of its own, ``.venv-bench/underway``, installed as
``pip install -e '.[redis,postgres]'`` with ``requirements-underway.txt``. The tasks are
``async def`` functions; the worker is ``Underway.worker(concurrency=C)`` with
every other setting at its default (lease, heartbeat, poll), run with ``worker.run()``. The
stores are the URL's defaults: ``sqlite:///<file>`` (WAL, ``synchronous=FULL``),
``redis://`` and ``postgresql://`` on the benchmark's private servers.

underway is imported inside the functions: the runs import it from the snapshot of the
commit under test that is first on their path.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import fieldkit
from fieldkit import Env
from harness import Ready

if TYPE_CHECKING:
    from underway import Task, Underway


@dataclass(frozen=True, slots=True)
class _App:
    uw: Underway
    noop: Task[[], None]
    sleep: Task[[], None]
    stamp: Task[[int], None]


_BACKEND = {
    "sqlite": "SQLiteBackend as shipped: a file on disk, WAL, synchronous=FULL, busy_timeout "
    "5 s, poll_interval 0.05 s (how often idle workers look for other processes' jobs); every "
    "write one BEGIN IMMEDIATE transaction",
    "redis": "RedisBackend as shipped (Lua scripts over a lean hiredis connection; an "
    "enqueue hands its job, leased, to a waiting idle worker, which blocks on a list of its "
    "own (BLPOP); other due jobs wake it)",
    "postgres": "PostgresBackend as shipped (asyncpg pool of 10, FOR UPDATE SKIP LOCKED, "
    "LISTEN/NOTIFY wake-ups, poll_interval 0.5 s as a fallback)",
}


class UnderwayField:
    """underway on one store."""

    has_bulk = True
    #: underway's own venv: its ``redis`` extra brings hiredis, which redis-py would also
    #: pick up for the peers, whose documented installs do not have it.
    venv = "underway"
    concurrent = True

    def __init__(self, store: str, prefetch: bool = True) -> None:
        self.store = store
        self.prefetch = prefetch
        self.key = f"underway-{store}" + ("" if prefetch else "-noprefetch")
        self.label = {"sqlite": "underway (SQLite)", "redis": "underway (Redis)"}.get(
            store, "underway (PostgreSQL)"
        )
        if not prefetch:
            self.label = self.label[:-1] + ", prefetch off)"

    def url(self, env: Env) -> str:
        """The store's URL."""
        if self.store == "sqlite":
            return f"sqlite:///{env.db}"
        return env.redis_url if self.store == "redis" else env.postgres_dsn

    def settings(self) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.settings`."""
        return {
            "store": _BACKEND[self.store],
            "worker": "Underway.worker(concurrency=C"
            + ("" if self.prefetch else ", prefetch=False")
            + "), defaults otherwise (lease 10 s, heartbeat lease/4, poll 1 s, "
            + (
                "prefetch on: while jobs are shorter than a round trip to the store, up to "
                "2 x C jobs are leased ahead of free slots, two exchanges under way; at most "
                "C run at once"
                if self.prefetch
                else "prefetch off: jobs leased only for free slots, one exchange under way"
            )
            + "), asyncio event loop (no uvloop); C = 10 (throughput, scale, memory) or 100 "
            "(saturation)",
            "tasks": "async def, retries=3 (default); the result (None) is stored",
            "delivery": "at-least-once: jobs are leased, renewed by heartbeat, and "
            "acknowledged after the function returns",
            "enqueue_single": "await noop.enqueue()",
            "enqueue_bulk": "await noop.enqueue_many([((), {})] * batch)",
        }

    def versions(self) -> dict[str, str]:
        """See :meth:`fieldkit.FieldSystem.versions`."""
        return {"underway": importlib.metadata.version("underway")}

    def _app(self, env: Env) -> _App:
        from underway import Underway

        uw = Underway(self.url(env))

        @uw.task(name="bench.noop")
        async def noop() -> None:
            fieldkit.record_done()

        @uw.task(name="bench.sleep")
        async def sleep() -> None:
            await fieldkit.async_sleep_then_done()

        @uw.task(name="bench.stamp")
        async def stamp(index: int) -> None:
            fieldkit.record_start(index)

        return _App(uw, noop, sleep, stamp)

    @staticmethod
    async def _stored(uw: Underway) -> int:
        backend = await uw.backend()
        counts = await backend.count_jobs()
        return sum(n for per_status in counts.values() for n in per_status.values())

    def prepare(self, env: Env) -> None:
        """See :meth:`fieldkit.FieldSystem.prepare`: create the tables once."""

        async def main() -> None:
            app = self._app(env)
            async with app.uw:
                await app.uw.backend()

        asyncio.run(main())

    def enqueue(self, env: Env, n: int, batch: int) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.enqueue`."""

        async def main() -> dict[str, Any]:
            app = self._app(env)
            async with app.uw:
                await app.uw.backend()
                noop = app.noop
                elapsed = await fieldkit.time_enqueues_async(
                    n, batch, noop.enqueue, lambda k: noop.enqueue_many([((), {})] * k)
                )
                stored = await self._stored(app.uw)
            return {"elapsed_s": elapsed, "stored": stored, **_where()}

        return asyncio.run(main())

    def fill(self, env: Env, n: int, kind: str) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.fill`."""

        async def main() -> dict[str, Any]:
            app = self._app(env)
            task = app.noop if kind == "noop" else app.sleep
            async with app.uw:
                for start in range(0, n, 1000):
                    await task.enqueue_many([((), {})] * min(1000, n - start))
                stored = await self._stored(app.uw)
            return {"stored": stored}

        return asyncio.run(main())

    def run_worker(self, env: Env, concurrency: int, ready: Ready) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.run_worker`."""

        async def main() -> dict[str, Any]:
            app = self._app(env)
            async with app.uw:
                await app.uw.backend()
                worker = app.uw.worker(concurrency=concurrency, prefetch=self.prefetch)
                await fieldkit.ready_async(ready, _where())
                await worker.run(handle_signals=True)
            return {"counts": dict(worker.counts)}

        return asyncio.run(main())

    def produce_latency(self, env: Env, count: int, spacing: float) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.produce_latency`."""

        async def main() -> dict[str, Any]:
            app = self._app(env)
            async with app.uw:
                await app.uw.backend()
                stamp = app.stamp
                result = await fieldkit.paced_async(count, spacing, stamp.enqueue)
            return {**result, **_where()}

        return asyncio.run(main())


def _where() -> dict[str, Any]:
    module = sys.modules["underway"]
    return {"module_file": module.__file__}
