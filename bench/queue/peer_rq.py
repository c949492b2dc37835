"""RQ with its defaults, for the field benchmark.

The tasks are plain module-level functions (RQ imports them by name in the worker). The
worker is ``rq.Worker`` as ``rq worker`` runs it: it forks a child for every job and runs one
job at a time, so one worker process has a concurrency of 1 whatever the workload asks for.

RQ is imported by name inside the functions: it is installed only in the bench venv.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

import fieldkit
from fieldkit import Env
from harness import Ready


def noop() -> None:
    """The no-op job."""
    fieldkit.record_done()


def sleep() -> None:
    """The saturation job."""
    fieldkit.sleep_then_done()


def stamp(index: int) -> None:
    """The latency job."""
    fieldkit.record_start(index)


def _queue(env: Env) -> Any:
    rq: Any = importlib.import_module("rq")
    redis: Any = importlib.import_module("redis")
    return rq.Queue("default", connection=redis.Redis.from_url(env.redis_url))


class RQ:
    """RQ 2: ``Queue.enqueue``, ``Queue.enqueue_many``, and a forking ``Worker``."""

    key = "rq"
    label = "RQ"
    store = "redis"
    has_bulk = True
    venv = ""
    concurrent = False

    def settings(self) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.settings`."""
        return {
            "worker": "rq.Worker([queue]).work() as `rq worker` runs it: a fork per job, "
            "one job at a time per worker process (RQ's concurrency is processes); "
            "dequeue by BLMOVE/BRPOP; logging at WARNING",
            "tasks": "module-level functions; result_ttl 500 s (the result is stored)",
            "delivery": "at-least-once for a worker that dies (jobs in its started registry "
            "are re-queued by the cleanup), at most once for the job being run otherwise",
            "enqueue_single": "queue.enqueue(noop)",
            "enqueue_bulk": "queue.enqueue_many([Queue.prepare_data(noop)] * batch) "
            "(one pipeline per call)",
        }

    def versions(self) -> dict[str, str]:
        """See :meth:`fieldkit.FieldSystem.versions`."""
        return {"rq": importlib.metadata.version("rq")}

    def prepare(self, env: Env) -> None:
        """See :meth:`fieldkit.FieldSystem.prepare`."""

    def enqueue(self, env: Env, n: int, batch: int) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.enqueue`."""
        queue = _queue(env)
        prepare = type(queue).prepare_data
        elapsed = fieldkit.time_enqueues(
            n,
            batch,
            lambda: queue.enqueue(noop),
            lambda k: queue.enqueue_many([prepare(noop) for _ in range(k)]),
        )
        return {"elapsed_s": elapsed, "stored": queue.count}

    def fill(self, env: Env, n: int, kind: str) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.fill`."""
        queue = _queue(env)
        prepare = type(queue).prepare_data
        task = noop if kind == "noop" else sleep
        for start in range(0, n, 1000):
            queue.enqueue_many([prepare(task) for _ in range(min(1000, n - start))])
        return {"stored": queue.count}

    def run_worker(self, env: Env, concurrency: int, ready: Ready) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.run_worker`; RQ takes SIGTERM as a warm shutdown."""
        rq: Any = importlib.import_module("rq")
        queue = _queue(env)
        worker = rq.Worker([queue], connection=queue.connection)
        queue.connection.ping()
        ready({})
        worker.work(logging_level="WARNING")
        return {}

    def produce_latency(self, env: Env, count: int, spacing: float) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.produce_latency`."""
        queue = _queue(env)
        queue.connection.ping()
        return fieldkit.paced(count, spacing, lambda i: queue.enqueue(stamp, i))
