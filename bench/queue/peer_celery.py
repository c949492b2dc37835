"""Celery on Redis with its defaults, for the field benchmark.

The tasks are plain functions; the worker is ``app.Worker(pool="threads", concurrency=C)``
in-process: one process, like every other system here (Celery's default pool, prefork,
would be C+1 processes).

Celery is imported by name inside the functions: it is installed only in the bench venv.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
from typing import Any

import fieldkit
from fieldkit import Env
from harness import Ready


class _App:
    def __init__(self, env: Env) -> None:
        celery: Any = importlib.import_module("celery")
        self.app: Any = celery.Celery("bench", broker=env.redis_url)

        def noop() -> None:
            fieldkit.record_done()

        def sleep() -> None:
            fieldkit.sleep_then_done()

        def stamp(index: int) -> None:
            fieldkit.record_start(index)

        self.noop: Any = self.app.task(name="noop")(noop)
        self.sleep: Any = self.app.task(name="sleep")(sleep)
        self.stamp: Any = self.app.task(name="stamp")(stamp)


class Celery:
    """Celery 5 with the Redis transport, no result backend (the default)."""

    key = "celery"
    label = "Celery"
    store = "redis"
    has_bulk = False
    venv = ""
    concurrent = True

    def settings(self) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.settings`."""
        return {
            "store": "Celery(broker='redis://...'), kombu's Redis transport, defaults "
            "(visibility_timeout 1 h); no result backend (the default)",
            "worker": "app.Worker(pool='threads', concurrency=C, loglevel='WARNING') in "
            "one process; defaults otherwise (prefetch multiplier 4, gossip, mingle and "
            "heartbeat on)",
            "tasks": "plain functions, no retries (the default)",
            "delivery": "at-most-once (acks_late=False, the default: a message is "
            "acknowledged when the worker takes it, before it runs)",
            "enqueue_single": "noop.delay()",
            "enqueue_bulk": "n/a: no bulk enqueue API (group(...).apply_async() publishes "
            "one message per task)",
            "fill": "noop.delay() from 8 threads",
        }

    def versions(self) -> dict[str, str]:
        """See :meth:`fieldkit.FieldSystem.versions`."""
        return {
            "celery": importlib.metadata.version("celery"),
            "kombu": importlib.metadata.version("kombu"),
        }

    def prepare(self, env: Env) -> None:
        """See :meth:`fieldkit.FieldSystem.prepare`."""

    def enqueue(self, env: Env, n: int, batch: int) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.enqueue`."""
        app = _App(env)
        elapsed = fieldkit.time_enqueues(n, batch, app.noop.delay, None)
        return {"elapsed_s": elapsed}

    def fill(self, env: Env, n: int, kind: str) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.fill`."""
        app = _App(env)
        fieldkit.fill_in_threads(n, (app.noop if kind == "noop" else app.sleep).delay)
        return {}

    def run_worker(self, env: Env, concurrency: int, ready: Ready) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.run_worker`; Celery takes SIGTERM as warm shutdown."""
        app = _App(env)
        worker = app.app.Worker(
            pool="threads", concurrency=concurrency, loglevel="WARNING", quiet=True
        )
        ready({})
        with contextlib.suppress(SystemExit):
            worker.start()
        return {}

    def produce_latency(self, env: Env, count: int, spacing: float) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.produce_latency`."""
        app = _App(env)
        return fieldkit.paced(count, spacing, app.stamp.delay)
