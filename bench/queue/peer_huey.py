"""Huey's Redis storage (``RedisHuey``) with its defaults, for the field benchmark.

The tasks are plain functions; the worker is Huey's consumer with ``workers=C,
worker_type="thread"``, every other option at its default, run in-process through
``huey.create_consumer`` (what ``huey_consumer`` does, without its per-task INFO lines).

Huey is imported by name inside the functions: it is installed only in the bench venv.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

import fieldkit
from fieldkit import Env
from harness import Ready


class _App:
    def __init__(self, env: Env) -> None:
        api: Any = importlib.import_module("huey")
        self.huey: Any = api.RedisHuey(name="bench", url=env.redis_url)

        def noop() -> None:
            fieldkit.record_done()

        def sleep() -> None:
            fieldkit.sleep_then_done()

        def stamp(index: int) -> None:
            fieldkit.record_start(index)

        self.noop: Any = self.huey.task(name="noop")(noop)
        self.sleep: Any = self.huey.task(name="sleep")(sleep)
        self.stamp: Any = self.huey.task(name="stamp")(stamp)
        self.huey.storage.conn.ping()


class HueyRedis:
    """Huey 3's ``RedisHuey``, storage and consumer at their defaults but for the workers."""

    key = "huey"
    label = "Huey"
    store = "redis"
    has_bulk = False
    venv = ""
    concurrent = True

    def settings(self) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.settings`."""
        return {
            "store": "RedisHuey(url=...): RedisStorage defaults (a list per queue, "
            "blocking=True: BRPOP with read_timeout 1 s)",
            "worker": "huey.create_consumer(workers=C, worker_type='thread'); defaults "
            "otherwise (initial_delay 0.1 s, backoff 1.15, max_delay 10 s, periodic on); "
            "logging at WARNING",
            "tasks": "plain functions, retries=0 (default); a None result is not stored",
            "delivery": "at-most-once: a job is popped from the list before it runs",
            "enqueue_single": "noop()",
            "enqueue_bulk": "n/a: no bulk enqueue API",
            "fill": "LPUSH of serialized messages, 1,000 per call",
        }

    def versions(self) -> dict[str, str]:
        """See :meth:`fieldkit.FieldSystem.versions`."""
        return {"huey": importlib.metadata.version("huey")}

    def prepare(self, env: Env) -> None:
        """See :meth:`fieldkit.FieldSystem.prepare`."""

    def enqueue(self, env: Env, n: int, batch: int) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.enqueue`."""
        app = _App(env)
        elapsed = fieldkit.time_enqueues(n, batch, app.noop, None)
        return {"elapsed_s": elapsed, "stored": app.huey.pending_count()}

    def fill(self, env: Env, n: int, kind: str) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.fill`."""
        app = _App(env)
        huey, storage = app.huey, app.huey.storage
        task = app.noop if kind == "noop" else app.sleep
        for start in range(0, n, 1000):
            messages = [huey.serialize_task(task.s()) for _ in range(min(1000, n - start))]
            storage.conn.lpush(storage.queue_key, *messages)
        return {"stored": huey.pending_count()}

    def run_worker(self, env: Env, concurrency: int, ready: Ready) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.run_worker`; the consumer stops on SIGTERM."""
        app = _App(env)
        consumer = app.huey.create_consumer(workers=concurrency, worker_type="thread")
        ready({})
        consumer.run()
        return {}

    def produce_latency(self, env: Env, count: int, spacing: float) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.produce_latency`."""
        app = _App(env)
        return fieldkit.paced(count, spacing, app.stamp)
