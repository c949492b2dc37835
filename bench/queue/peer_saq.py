"""SAQ on Redis with its defaults, for the field benchmark.

The tasks are coroutines; the worker is ``saq.Worker(queue, functions, concurrency=C)``,
run in-process with ``start()``, which stops on SIGTERM.

SAQ is imported by name inside the functions: it is installed only in the bench venv.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
from typing import Any

import fieldkit
from fieldkit import Env
from harness import Ready


async def noop(ctx: Any) -> None:
    """The no-op job."""
    fieldkit.record_done()


async def sleep(ctx: Any) -> None:
    """The saturation job."""
    await fieldkit.async_sleep_then_done()


async def stamp(ctx: Any, *, index: int) -> None:
    """The latency job."""
    fieldkit.record_start(index)


async def _queue(env: Env) -> Any:
    saq: Any = importlib.import_module("saq")
    queue = saq.Queue.from_url(env.redis_url)
    await queue.connect()
    return queue


class Saq:
    """SAQ 0.26 on its Redis queue."""

    key = "saq"
    label = "SAQ"
    store = "redis"
    has_bulk = False
    venv = ""
    concurrent = True

    def settings(self) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.settings`."""
        return {
            "store": "Queue.from_url('redis://...'), defaults",
            "worker": "Worker(queue, functions, concurrency=C); defaults otherwise "
            "(dequeue by blocking BLMOVE, upkeep timers, job timeout 10 s)",
            "tasks": "async def; the job and its result are kept (default ttl 600 s)",
            "delivery": "at-least-once: a job that outlives its timeout or heartbeat is "
            "retried by the upkeep",
            "enqueue_single": "await queue.enqueue('noop')",
            "enqueue_bulk": "n/a: no bulk enqueue API (queue.map enqueues one by one and "
            "waits for the results)",
            "fill": "enqueue, 100 concurrent calls at a time",
        }

    def versions(self) -> dict[str, str]:
        """See :meth:`fieldkit.FieldSystem.versions`."""
        return {"saq": importlib.metadata.version("saq")}

    def prepare(self, env: Env) -> None:
        """See :meth:`fieldkit.FieldSystem.prepare`."""

    def enqueue(self, env: Env, n: int, batch: int) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.enqueue`."""

        async def main() -> dict[str, Any]:
            queue = await _queue(env)
            elapsed = await fieldkit.time_enqueues_async(
                n, batch, lambda: queue.enqueue("noop"), None
            )
            stored = await queue.count("queued")
            await queue.disconnect()
            return {"elapsed_s": elapsed, "stored": stored}

        return asyncio.run(main())

    def fill(self, env: Env, n: int, kind: str) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.fill`."""

        async def main() -> dict[str, Any]:
            queue = await _queue(env)
            for start in range(0, n, 100):
                await asyncio.gather(*[queue.enqueue(kind) for _ in range(min(100, n - start))])
            stored = await queue.count("queued")
            await queue.disconnect()
            return {"stored": stored}

        return asyncio.run(main())

    def run_worker(self, env: Env, concurrency: int, ready: Ready) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.run_worker`."""
        saq: Any = importlib.import_module("saq")

        async def main() -> dict[str, Any]:
            queue = await _queue(env)
            worker = saq.Worker(queue, [noop, sleep, stamp], concurrency=concurrency)
            await fieldkit.ready_async(ready)
            await worker.start()  # until SIGTERM, which the worker handles itself
            await queue.disconnect()
            return {}

        return asyncio.run(main())

    def produce_latency(self, env: Env, count: int, spacing: float) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.produce_latency`."""

        async def main() -> dict[str, Any]:
            queue = await _queue(env)
            result = await fieldkit.paced_async(
                count, spacing, lambda i: queue.enqueue("stamp", index=i)
            )
            await queue.disconnect()
            return result

        return asyncio.run(main())
