"""Measure underway's hot paths on one backend, for profiling (not the peer benchmark).

Workloads, each on a fresh store:

* ``drain``: N no-op async jobs stored first (``enqueue_many``, 1,000 per call, in a
  subprocess), then this process runs one worker at concurrency 10 until all have
  succeeded. The rate is N over the time from ``worker.run()`` to the last job's
  ``finished_at`` (the worker's clock when the last outcome was stored).
* ``single``: N awaits of ``task.enqueue()`` one after another.
* ``bulk``: N jobs through ``task.enqueue_many``, 1,000 per call.
* ``memory``: ``drain``, with the worker process's RSS read after every tenth of the jobs.
* ``latency``: an idle worker in a subprocess; this process enqueues ``--latency-jobs``
  jobs ``--spacing`` seconds apart; each job returns ``time.time()`` when it starts; p50
  and p99 of start minus the moment ``enqueue`` was called.

Backends: ``sqlite`` (a file in a fresh temporary directory, the shipped defaults:
WAL, synchronous=FULL), ``redis`` (a private ``redis-server`` on a free port, no
persistence, started and stopped here unless ``--redis-url`` is given), ``postgres`` (the
server at ``--pg-dsn``, a schema of its own dropped at the end).

Examples::

    .venv/bin/python bench/profile/hotpaths.py drain --backend redis --n 10000 --repeat 3
    py-spy record -o drain.svg -- .venv/bin/python bench/profile/hotpaths.py drain --backend redis

Profilers see only the timed part: the fill and the latency worker run in subprocesses.
Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
#: The private redis-server of the run, whose CPU time is reported.
SERVER_PIDS: list[int] = []


def server_cpu() -> float:
    """CPU seconds (user + system) the private redis-server has used, or 0."""
    if not SERVER_PIDS:
        return 0.0
    fields = Path(f"/proc/{SERVER_PIDS[0]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of our own on a free loopback port, without persistence."""
    folder = tempfile.mkdtemp(prefix="uw-prof-redis-")
    port = free_port()
    subprocess.run(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--dir",
            folder,
            "--pidfile",
            f"{folder}/redis.pid",
            "--logfile",
            f"{folder}/redis.log",
        ],
        check=True,
    )
    deadline = time.monotonic() + 5
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server on port {port} did not start")
        time.sleep(0.05)
    pid = int(Path(folder, "redis.pid").read_text())
    SERVER_PIDS.append(pid)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        SERVER_PIDS.remove(pid)
        os.kill(pid, 15)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def store(args: argparse.Namespace) -> Iterator[str]:
    """The URL of a fresh, empty store for one run."""
    if args.backend == "memory":
        yield "memory://"
    elif args.backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="uw-prof-sqlite-", dir=args.sqlite_dir)
        try:
            yield f"sqlite:///{folder}/jobs.db"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    elif args.backend == "redis":
        prefix = f"prof{secrets.token_hex(4)}"
        if args.redis_url:
            yield f"{args.redis_url}?prefix={prefix}"
        else:
            with private_redis() as url:
                yield f"{url}?prefix={prefix}"
    else:
        schema = f"uwprof_{secrets.token_hex(4)}"
        try:
            yield f"{args.pg_dsn}?schema={schema}"
        finally:
            asyncio.run(_drop_schema(args.pg_dsn, schema))


async def _drop_schema(dsn: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def redis_stats(url: str, reset: bool) -> dict[str, float]:
    """Redis's per-command totals (calls, microseconds) since the last reset."""
    import redis

    client = redis.Redis.from_url(url.split("?")[0])
    try:
        if reset:
            client.config_resetstat()
            return {}
        stats = client.info("commandstats")
    finally:
        client.close()
    return {
        name.removeprefix("cmdstat_"): round(v["usec"] / 1e6, 3)
        for name, v in sorted(stats.items(), key=lambda kv: -kv[1]["usec"])[:8]
    }


def make_app(url: str) -> Any:
    from underway import Underway

    uw = Underway(url)

    @uw.task(name="prof.noop")
    async def noop() -> None:
        return None

    @uw.task(name="prof.stamp")
    async def stamp() -> float:
        return time.time()

    return uw, noop, stamp


# -- roles run in subprocesses --------------------------------------------------------------


async def fill(url: str, n: int) -> None:
    uw, noop, _ = make_app(url)
    async with uw:
        for start in range(0, n, 1000):
            await noop.enqueue_many([((), {})] * min(1000, n - start))


async def idle_worker(url: str) -> None:
    uw, _, _ = make_app(url)
    async with uw:
        worker = uw.worker(concurrency=10, lease=10)
        task = asyncio.ensure_future(worker.run(handle_signals=True))
        await worker.started()
        print("READY", flush=True)
        await task


# -- timed workloads ------------------------------------------------------------------------


def rss_mib() -> float:
    """This process's resident memory."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def drain(url: str, n: int, loop_name: str, memory: bool = False) -> dict[str, Any]:
    uw, noop, _ = make_app(url)
    done = 0
    worker: Any = None
    samples: list[float] = []

    async def counted() -> None:
        nonlocal done
        done += 1
        if memory and done % max(1, n // 10) == 0:
            samples.append(round(rss_mib(), 1))
        if done == n:
            worker.stop()

    noop.fn = counted  # the same task name and options, counting its runs
    async with uw:
        backend = await uw.backend()
        if url.startswith("memory"):  # one store per process: fill it here, untimed
            for start in range(0, n, 1000):
                await noop.enqueue_many([((), {})] * min(1000, n - start))
        worker = uw.worker(concurrency=10, lease=10)
        is_redis = url.startswith("redis")
        if is_redis:
            redis_stats(url, reset=True)
        started = time.time()
        cpu, server = time.process_time(), server_cpu()
        await worker.run()
        ended = time.time()
        cpu, server = time.process_time() - cpu, server_cpu() - server
        commands = redis_stats(url, reset=False) if is_redis else {}
        counts = await backend.count_jobs()
        last = await _last_finished(backend, n)
    succeeded = sum(n for per in counts.values() for s, n in per.items() if s == "succeeded")
    return {
        "rate": n / (last - started),
        "rate_to_return": n / (ended - started),
        "seconds": last - started,
        "cpu_s": cpu,
        "server_cpu_s": server,
        "succeeded": succeeded,
        "loop": loop_name,
        "server_seconds_by_command": commands,
        **({"rss_mib_every_tenth": samples} if memory else {}),
    }


async def _last_finished(backend: Any, n: int) -> float:
    latest = 0.0
    offset = 0
    while offset < n:
        page = await backend.list_jobs(limit=1000, offset=offset)
        if not page:
            break
        for record in page:
            if record.finished_at is not None:
                latest = max(latest, record.finished_at.timestamp())
        offset += len(page)
    return latest


async def enqueue(url: str, n: int, bulk: bool, loop_name: str) -> dict[str, Any]:
    uw, noop, _ = make_app(url)
    async with uw:
        began = time.perf_counter()
        cpu, server = time.process_time(), server_cpu()
        if bulk:
            for start in range(0, n, 1000):
                await noop.enqueue_many([((), {})] * min(1000, n - start))
        else:
            for _ in range(n):
                await noop.enqueue()
        elapsed = time.perf_counter() - began
        cpu, server = time.process_time() - cpu, server_cpu() - server
    return {
        "rate": n / elapsed,
        "seconds": elapsed,
        "cpu_s": cpu,
        "server_cpu_s": server,
        "loop": loop_name,
    }


async def latency(url: str, count: int, spacing: float, loop_name: str) -> dict[str, Any]:
    uw, _, stamp = make_app(url)
    command = [sys.executable, str(HERE), "_idle_worker", url]
    if loop_name == "uvloop":
        command.append("--uvloop")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        if not line.startswith("READY"):
            raise RuntimeError(f"the worker did not start: {line!r}")
        await asyncio.sleep(0.5)
        async with uw:
            jobs, called = [], []
            began = time.perf_counter()
            for index in range(count):
                wait = began + index * spacing - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                called.append(time.time())
                jobs.append(await stamp.enqueue())
            starts = [await job.result(timeout=30) for job in jobs]
    finally:
        proc.terminate()
        proc.wait(10)
    delays = sorted((s - c) * 1000 for s, c in zip(starts, called, strict=True))
    return {
        "p50_ms": statistics.median(delays),
        "p99_ms": delays[min(len(delays) - 1, int(len(delays) * 0.99))],
        "max_ms": delays[-1],
        "loop": loop_name,
    }


def run(coro: Any, use_uvloop: bool) -> Any:
    if use_uvloop:
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "workload",
        choices=["drain", "memory", "single", "bulk", "latency", "_fill", "_idle_worker"],
    )
    parser.add_argument("url", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument(
        "--backend", choices=["memory", "sqlite", "redis", "postgres"], default="redis"
    )
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument("--redis-url", help="use this server instead of a private one")
    parser.add_argument("--pg-dsn", default=PG_DSN)
    parser.add_argument("--sqlite-dir", help="where the database files go (default: /tmp)")
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--spacing", type=float, default=0.02)
    args = parser.parse_args()
    loop_name = "uvloop" if args.uvloop else "asyncio"
    if args.workload == "_fill":
        run(fill(args.url, args.n), args.uvloop)
        return
    if args.workload == "_idle_worker":
        run(idle_worker(args.url), args.uvloop)
        return
    for _ in range(args.repeat):
        with store(args) as url:
            if args.workload in ("drain", "memory") and args.backend != "memory":
                subprocess.run(
                    [sys.executable, str(HERE), "_fill", url, "--n", str(args.n)], check=True
                )
            if args.workload in ("drain", "memory"):
                result = run(drain(url, args.n, loop_name, args.workload == "memory"), args.uvloop)
            elif args.workload == "latency":
                result = run(latency(url, args.latency_jobs, args.spacing, loop_name), args.uvloop)
            else:
                bulk = args.workload == "bulk"
                result = run(enqueue(url, args.n, bulk, loop_name), args.uvloop)
        result = {"workload": args.workload, "backend": args.backend, "n": args.n, **result}
        print(
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}),
            flush=True,
        )


if __name__ == "__main__":
    main()
