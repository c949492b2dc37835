"""Dramatiq's Redis broker with its defaults, for the field benchmark.

The actors are plain functions; the worker is ``dramatiq.Worker(broker, worker_threads=C)``
in-process, one process (the ``dramatiq`` command starts one process per CPU with 8 threads
each; the benchmark asks every system for one process).

Dramatiq is imported by name inside the functions: it is installed only in the bench venv.
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
        dramatiq: Any = importlib.import_module("dramatiq")
        brokers: Any = importlib.import_module("dramatiq.brokers.redis")
        self.dramatiq = dramatiq
        self.broker: Any = brokers.RedisBroker(url=env.redis_url)
        dramatiq.set_broker(self.broker)

        def noop() -> None:
            fieldkit.record_done()

        def sleep() -> None:
            fieldkit.sleep_then_done()

        def stamp(index: int) -> None:
            fieldkit.record_start(index)

        def actor(fn: Any, name: str) -> Any:
            return dramatiq.actor(fn, actor_name=name, broker=self.broker)

        self.noop: Any = actor(noop, "noop")
        self.sleep: Any = actor(sleep, "sleep")
        self.stamp: Any = actor(stamp, "stamp")
        self.broker.client.ping()


class Dramatiq:
    """Dramatiq 2 on its ``RedisBroker``, default middleware.

    ``worker_timeout`` (ms) None keeps the default, 1,000 ms, which is also the longest an
    idle consumer sleeps between two looks at an empty queue (its backoff grows to it).
    """

    store = "redis"
    has_bulk = False
    venv = ""
    concurrent = True

    def __init__(self, worker_timeout: int | None = None) -> None:
        self.worker_timeout = worker_timeout
        self.key = "dramatiq" if worker_timeout is None else "dramatiq-tuned"
        self.label = (
            "Dramatiq"
            if worker_timeout is None
            else f"Dramatiq (worker_timeout {worker_timeout} ms)"
        )

    def settings(self) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.settings`."""
        return {
            "store": "RedisBroker(url=...) with the default middleware (age limit, time "
            "limit, shutdown notifications, callbacks, pipelines, retries)",
            "worker": "dramatiq.Worker(broker, worker_threads=C"
            + ("" if self.worker_timeout is None else f", worker_timeout={self.worker_timeout}")
            + ") in one process; defaults otherwise (prefetch 2 x threads, worker_timeout "
            + (
                "1,000 ms: an idle consumer backs off up to 1 s between looks)"
                if self.worker_timeout is None
                else "tuned)"
            ),
            "tasks": "plain functions (actors), max_retries 20 (default); no results",
            "delivery": "at-least-once: messages are acknowledged after the actor returns",
            "enqueue_single": "noop.send()",
            "enqueue_bulk": "n/a: no bulk enqueue API (group(...).run() sends one by one)",
            "fill": "noop.send() from 8 threads",
        }

    def versions(self) -> dict[str, str]:
        """See :meth:`fieldkit.FieldSystem.versions`."""
        return {"dramatiq": importlib.metadata.version("dramatiq")}

    def prepare(self, env: Env) -> None:
        """See :meth:`fieldkit.FieldSystem.prepare`."""

    def enqueue(self, env: Env, n: int, batch: int) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.enqueue`."""
        app = _App(env)
        elapsed = fieldkit.time_enqueues(n, batch, app.noop.send, None)
        return {"elapsed_s": elapsed}

    def fill(self, env: Env, n: int, kind: str) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.fill`."""
        app = _App(env)
        fieldkit.fill_in_threads(n, (app.noop if kind == "noop" else app.sleep).send)
        return {}

    def run_worker(self, env: Env, concurrency: int, ready: Ready) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.run_worker`."""
        app = _App(env)
        stop = fieldkit.sigterm_event()
        options = {} if self.worker_timeout is None else {"worker_timeout": self.worker_timeout}
        worker = app.dramatiq.Worker(app.broker, worker_threads=concurrency, **options)
        ready({})
        worker.start()
        stop.wait()
        worker.stop(timeout=10_000)
        return {}

    def produce_latency(self, env: Env, count: int, spacing: float) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.produce_latency`."""
        app = _App(env)
        return fieldkit.paced(count, spacing, app.stamp.send)
