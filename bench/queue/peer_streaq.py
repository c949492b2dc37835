"""streaq with its defaults, for the field benchmark.

The tasks are coroutines registered with a ``streaq.Worker(redis_url, concurrency=C)``; the
worker runs in-process with ``run_async()`` and stops on SIGTERM by its own handler.

streaq is imported by name inside the functions: it is installed only in the bench venv.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
from typing import Any

import fieldkit
from fieldkit import Env
from harness import Ready


async def noop() -> None:
    """The no-op job."""
    fieldkit.record_done()


async def sleep() -> None:
    """The saturation job."""
    await fieldkit.async_sleep_then_done()


async def stamp(index: int) -> None:
    """The latency job."""
    fieldkit.record_start(index)


class _App:
    def __init__(self, env: Env, concurrency: int = 16) -> None:
        streaq: Any = importlib.import_module("streaq")
        self.worker: Any = streaq.Worker(redis_url=env.redis_url, concurrency=concurrency)
        self.noop: Any = self.worker.task(name="noop")(noop)
        self.sleep: Any = self.worker.task(name="sleep")(sleep)
        self.stamp: Any = self.worker.task(name="stamp")(stamp)


class Streaq:
    """streaq 7 (Redis streams, coredis)."""

    key = "streaq"
    label = "streaq"
    store = "redis"
    has_bulk = True
    venv = ""
    concurrent = True

    def settings(self) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.settings`."""
        return {
            "store": "Worker(redis_url=...), defaults (Redis streams via coredis, pickle)",
            "worker": "Worker(concurrency=C).run_async() in one process; defaults "
            "otherwise (prefetch, idle_timeout 60 s)",
            "tasks": "async def, max_tries 3, results kept 5 minutes (the defaults)",
            "delivery": "at-least-once: stream entries are acknowledged after the task",
            "enqueue_single": "async with worker: await noop.enqueue()",
            "enqueue_bulk": "await worker.enqueue_many([noop.enqueue()] * batch) (one "
            "pipeline per call)",
        }

    def versions(self) -> dict[str, str]:
        """See :meth:`fieldkit.FieldSystem.versions`."""
        return {
            "streaq": importlib.metadata.version("streaq"),
            "coredis": importlib.metadata.version("coredis"),
        }

    def prepare(self, env: Env) -> None:
        """See :meth:`fieldkit.FieldSystem.prepare`."""

    def enqueue(self, env: Env, n: int, batch: int) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.enqueue`."""

        async def main() -> dict[str, Any]:
            app = _App(env)
            async with app.worker:

                async def single() -> None:
                    await app.noop.enqueue()

                async def bulk(k: int) -> None:
                    await app.worker.enqueue_many([app.noop.enqueue() for _ in range(k)])

                elapsed = await fieldkit.time_enqueues_async(n, batch, single, bulk)
                stored = await app.worker.queue_size()
            return {"elapsed_s": elapsed, "stored": stored}

        return asyncio.run(main())

    def fill(self, env: Env, n: int, kind: str) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.fill`."""

        async def main() -> dict[str, Any]:
            app = _App(env)
            task = app.noop if kind == "noop" else app.sleep
            async with app.worker:
                for start in range(0, n, 1000):
                    await app.worker.enqueue_many(
                        [task.enqueue() for _ in range(min(1000, n - start))]
                    )
                stored = await app.worker.queue_size()
            return {"stored": stored}

        return asyncio.run(main())

    def run_worker(self, env: Env, concurrency: int, ready: Ready) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.run_worker`."""

        async def main() -> dict[str, Any]:
            app = _App(env, concurrency)
            await fieldkit.ready_async(ready)
            await app.worker.run_async()
            return {}

        return asyncio.run(main())

    def produce_latency(self, env: Env, count: int, spacing: float) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.produce_latency`."""

        async def main() -> dict[str, Any]:
            app = _App(env)
            async with app.worker:

                async def send(index: int) -> None:
                    await app.stamp.enqueue(index)

                return await fieldkit.paced_async(count, spacing, send)

        return asyncio.run(main())
