"""arq with its defaults, and with its poll delay tuned, for the field benchmark.

arq pins ``redis<6`` and taskiq-redis ``redis>=8``, so arq runs from a venv of its own,
``.venv-bench/arq`` (``requirements-arq.txt``). The tasks are coroutines; the worker is
``arq.worker.Worker(functions, max_jobs=C)``, run in-process. arq's workers look for jobs by
polling every ``poll_delay`` (0.5 s by default); the tuned row polls every 10 ms.

arq is imported by name inside the functions: it is installed only in its bench venv.
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


async def stamp(ctx: Any, index: int) -> None:
    """The latency job."""
    fieldkit.record_start(index)


def _settings(env: Env) -> Any:
    connections: Any = importlib.import_module("arq.connections")
    host, port = fieldkit.redis_host_port(env.redis_url)
    return connections.RedisSettings(host=host, port=port)


async def _pool(env: Env) -> Any:
    arq: Any = importlib.import_module("arq")
    return await arq.create_pool(_settings(env))


class Arq:
    """arq 0.28; ``poll_delay`` None keeps the default (0.5 s)."""

    store = "redis"
    has_bulk = False
    venv = "arq"
    concurrent = True

    def __init__(self, poll_delay: float | None = None) -> None:
        self.poll_delay = poll_delay
        self.key = "arq-default" if poll_delay is None else "arq"
        self.label = "arq (default poll 0.5 s)" if poll_delay is None else "arq (poll 10 ms)"

    def settings(self) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.settings`."""
        poll = "0.5 s (default)" if self.poll_delay is None else f"{self.poll_delay:g} s (tuned)"
        return {
            "store": "create_pool(RedisSettings(host, port)); redis-py 5 with hiredis "
            "(arq's own pins)",
            "worker": f"Worker(functions, max_jobs=C, poll_delay={poll}); defaults "
            "otherwise (keep_result 3600 s, job_timeout 300 s)",
            "tasks": "async def; the result is stored for an hour (the default)",
            "delivery": "at-least-once: a job is removed once its result is recorded",
            "enqueue_single": "await pool.enqueue_job('noop')",
            "enqueue_bulk": "n/a: no bulk enqueue API",
            "fill": "enqueue_job, 100 concurrent calls at a time",
        }

    def versions(self) -> dict[str, str]:
        """See :meth:`fieldkit.FieldSystem.versions`."""
        return {
            "arq": importlib.metadata.version("arq"),
            "redis (arq venv)": importlib.metadata.version("redis"),
        }

    def prepare(self, env: Env) -> None:
        """See :meth:`fieldkit.FieldSystem.prepare`."""

    def enqueue(self, env: Env, n: int, batch: int) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.enqueue`."""

        async def main() -> dict[str, Any]:
            pool = await _pool(env)
            elapsed = await fieldkit.time_enqueues_async(
                n, batch, lambda: pool.enqueue_job("noop"), None
            )
            stored = await pool.zcard("arq:queue")
            await pool.aclose()
            return {"elapsed_s": elapsed, "stored": stored}

        return asyncio.run(main())

    def fill(self, env: Env, n: int, kind: str) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.fill`."""

        async def main() -> dict[str, Any]:
            pool = await _pool(env)
            for start in range(0, n, 100):
                calls = [pool.enqueue_job(kind) for _ in range(min(100, n - start))]
                await asyncio.gather(*calls)
            stored = await pool.zcard("arq:queue")
            await pool.aclose()
            return {"stored": stored}

        return asyncio.run(main())

    def run_worker(self, env: Env, concurrency: int, ready: Ready) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.run_worker`."""
        worker_module: Any = importlib.import_module("arq.worker")

        async def main() -> dict[str, Any]:
            options: dict[str, Any] = {"max_jobs": concurrency, "handle_signals": False}
            if self.poll_delay is not None:
                options["poll_delay"] = self.poll_delay
            worker = worker_module.Worker(
                functions=[noop, sleep, stamp], redis_settings=_settings(env), **options
            )
            await fieldkit.ready_async(ready)
            running = asyncio.create_task(worker.main())
            await fieldkit.until_sigterm()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await worker.close()
            return {"jobs_complete": worker.jobs_complete}

        return asyncio.run(main())

    def produce_latency(self, env: Env, count: int, spacing: float) -> dict[str, Any]:
        """See :meth:`fieldkit.FieldSystem.produce_latency`."""

        async def main() -> dict[str, Any]:
            pool = await _pool(env)
            await pool.ping()
            result = await fieldkit.paced_async(
                count, spacing, lambda i: pool.enqueue_job("stamp", i)
            )
            await pool.aclose()
            return result

        return asyncio.run(main())
