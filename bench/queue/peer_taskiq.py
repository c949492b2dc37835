"""taskiq with taskiq-redis, for the field benchmark.

The tasks are coroutines; the worker is taskiq's ``Receiver`` with ``max_async_tasks=C``,
run in-process the way ``taskiq worker`` runs each of its processes (the command starts 2
processes by default; the benchmark asks every system for one). The broker is
``RedisStreamBroker``, the one taskiq-redis's README sets up, which acknowledges messages;
``ListQueueBroker`` (LPUSH/BRPOP, no acknowledgements) is the variant ``taskiq-list``.

taskiq is imported by name inside the functions: it is installed only in the bench venv.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
from concurrent.futures import ThreadPoolExecutor
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
    def __init__(self, env: Env, broker_class: str) -> None:
        brokers: Any = importlib.import_module("taskiq_redis")
        self.broker: Any = getattr(brokers, broker_class)(url=env.redis_url)
        self.noop: Any = self.broker.task(task_name="noop")(noop)
        self.sleep: Any = self.broker.task(task_name="sleep")(sleep)
        self.stamp: Any = self.broker.task(task_name="stamp")(stamp)


class Taskiq:
    """taskiq 0.13 with a taskiq-redis broker."""

    store = "redis"
    has_bulk = False
    venv = ""
    concurrent = True

    def __init__(self, broker_class: str = "RedisStreamBroker") -> None:
        self.broker_class = broker_class
        stream = broker_class == "RedisStreamBroker"
        self.key = "taskiq" if stream else "taskiq-list"
        self.label = "taskiq (stream)" if stream else "taskiq (list)"

    def settings(self) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.settings`."""
        stream = self.broker_class == "RedisStreamBroker"
        return {
            "store": f"{self.broker_class}(url=...), defaults"
            + (" (XREADGROUP, 100 per read, block 2 s)" if stream else " (LPUSH / BRPOP)")
            + "; no result backend",
            "worker": "Receiver(broker, executor=ThreadPoolExecutor(), max_async_tasks=C), "
            "listen() in one process, as `taskiq worker` runs each worker process; asyncio "
            "event loop (uvloop is not installed)",
            "tasks": "async def",
            "delivery": "at-least-once: acknowledged when the result is saved (the default)"
            if stream
            else "at-most-once: popped from the list before it runs",
            "enqueue_single": "await noop.kiq()",
            "enqueue_bulk": "n/a: no bulk enqueue API",
            "fill": "kiq, 100 concurrent calls at a time",
        }

    def versions(self) -> dict[str, str]:
        """See :meth:`fieldkit.FieldSystem.versions`."""
        return {
            "taskiq": importlib.metadata.version("taskiq"),
            "taskiq-redis": importlib.metadata.version("taskiq-redis"),
        }

    def prepare(self, env: Env) -> None:
        """See :meth:`fieldkit.FieldSystem.prepare`."""

    def enqueue(self, env: Env, n: int, batch: int) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.enqueue`."""

        async def main() -> dict[str, Any]:
            app = _App(env, self.broker_class)
            await app.broker.startup()
            elapsed = await fieldkit.time_enqueues_async(n, batch, app.noop.kiq, None)
            await app.broker.shutdown()
            return {"elapsed_s": elapsed}

        return asyncio.run(main())

    def fill(self, env: Env, n: int, kind: str) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.fill`."""

        async def main() -> dict[str, Any]:
            app = _App(env, self.broker_class)
            await app.broker.startup()
            kiq = (app.noop if kind == "noop" else app.sleep).kiq
            for start in range(0, n, 100):
                await asyncio.gather(*[kiq() for _ in range(min(100, n - start))])
            await app.broker.shutdown()
            return {}

        return asyncio.run(main())

    def run_worker(self, env: Env, concurrency: int, ready: Ready) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.run_worker`."""
        receiver_module: Any = importlib.import_module("taskiq.receiver")

        async def main() -> dict[str, Any]:
            app = _App(env, self.broker_class)
            app.broker.is_worker_process = True
            with ThreadPoolExecutor() as pool:
                receiver = receiver_module.Receiver(
                    broker=app.broker, executor=pool, max_async_tasks=concurrency
                )
                await fieldkit.ready_async(ready)
                finish = asyncio.Event()
                running = asyncio.create_task(receiver.listen(finish))
                await fieldkit.until_sigterm()
                finish.set()
                await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), 30)
                await app.broker.shutdown()
            return {}

        return asyncio.run(main())

    def produce_latency(self, env: Env, count: int, spacing: float) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.produce_latency`."""

        async def main() -> dict[str, Any]:
            app = _App(env, self.broker_class)
            await app.broker.startup()
            result = await fieldkit.paced_async(count, spacing, app.stamp.kiq)
            await app.broker.shutdown()
            return result

        return asyncio.run(main())
