"""procrastinate on PostgreSQL with its defaults, for the field benchmark.

The tasks are coroutines; the worker is ``app.run_worker_async(concurrency=C)`` in-process
(procrastinate's default concurrency is 1). The schema is applied once to a template
database (:meth:`Procrastinate.prepare`); every run starts from a copy of it.

procrastinate is imported by name inside the functions: it is installed only in the bench
venv.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
from typing import Any

import fieldkit
from fieldkit import Env
from harness import Ready


class _App:
    def __init__(self, env: Env) -> None:
        procrastinate: Any = importlib.import_module("procrastinate")
        self.app: Any = procrastinate.App(
            connector=procrastinate.PsycopgConnector(conninfo=env.postgres_dsn)
        )

        async def noop() -> None:
            fieldkit.record_done()

        async def sleep() -> None:
            await fieldkit.async_sleep_then_done()

        async def stamp(index: int) -> None:
            fieldkit.record_start(index)

        self.noop: Any = self.app.task(name="noop")(noop)
        self.sleep: Any = self.app.task(name="sleep")(sleep)
        self.stamp: Any = self.app.task(name="stamp")(stamp)


async def _stored(app: Any) -> int:
    rows = await app.connector.execute_query_all_async(
        "SELECT count(*) AS n FROM procrastinate_jobs"
    )
    return int(rows[0]["n"])


class Procrastinate:
    """procrastinate 3 with the psycopg 3 connector."""

    key = "procrastinate"
    label = "procrastinate"
    store = "postgres"
    has_bulk = True
    venv = ""
    concurrent = True

    def settings(self) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.settings`."""
        return {
            "store": "App(connector=PsycopgConnector(conninfo=...)), defaults",
            "worker": "app.run_worker_async(concurrency=C) in one process; defaults "
            "otherwise (listen_notify on, fetch_job_polling_interval 5 s)",
            "tasks": "async def; finished jobs are kept (delete_jobs: never, the default)",
            "delivery": "at-least-once: a job stays 'doing' until its outcome is written; "
            "stalled workers' jobs can be retried",
            "enqueue_single": "await noop.defer_async()",
            "enqueue_bulk": "await noop.batch_defer_async(*[{}] * batch)",
        }

    def versions(self) -> dict[str, str]:
        """See :meth:`fieldkit.FieldSystem.versions`."""
        return {
            "procrastinate": importlib.metadata.version("procrastinate"),
            "psycopg": importlib.metadata.version("psycopg"),
        }

    def prepare(self, env: Env) -> None:
        """See :meth:`fieldkit.FieldSystem.prepare`: apply procrastinate's schema."""

        async def main() -> None:
            app = _App(env)
            async with app.app.open_async():
                await app.app.schema_manager.apply_schema_async()

        asyncio.run(main())

    def enqueue(self, env: Env, n: int, batch: int) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.enqueue`."""

        async def main() -> dict[str, Any]:
            app = _App(env)
            async with app.app.open_async():
                elapsed = await fieldkit.time_enqueues_async(
                    n,
                    batch,
                    app.noop.defer_async,
                    lambda k: app.noop.batch_defer_async(*[{}] * k),
                )
                stored = await _stored(app.app)
            return {"elapsed_s": elapsed, "stored": stored}

        return asyncio.run(main())

    def fill(self, env: Env, n: int, kind: str) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.fill`."""

        async def main() -> dict[str, Any]:
            app = _App(env)
            task = app.noop if kind == "noop" else app.sleep
            async with app.app.open_async():
                for start in range(0, n, 1000):
                    await task.batch_defer_async(*[{}] * min(1000, n - start))
                stored = await _stored(app.app)
            return {"stored": stored}

        return asyncio.run(main())

    def run_worker(self, env: Env, concurrency: int, ready: Ready) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.run_worker`; SIGTERM stops it gracefully."""

        async def main() -> dict[str, Any]:
            app = _App(env)
            async with app.app.open_async():
                await fieldkit.ready_async(ready)
                await app.app.run_worker_async(concurrency=concurrency)
            return {}

        return asyncio.run(main())

    def produce_latency(self, env: Env, count: int, spacing: float) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.produce_latency`."""

        async def main() -> dict[str, Any]:
            app = _App(env)
            async with app.app.open_async():
                return await fieldkit.paced_async(
                    count, spacing, lambda i: app.stamp.defer_async(index=i)
                )

        return asyncio.run(main())
