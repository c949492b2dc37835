"""Helpers shared by the queue tests: store URLs, an in-process worker, polling."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from underway import Underway, Worker

ROOT = Path(__file__).resolve().parents[2]

#: The stores every parametrized queue test runs against.
KINDS = ["memory", "sqlite"]


def backend_url(kind: str, tmp_path: Path, name: str = "jobs.db") -> str:
    """The URL of a fresh store of this kind (SQLite polls fast, to keep tests quick)."""
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / name}?poll_interval=0.02"
    raise AssertionError(f"no URL for {kind!r}")


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///...`` URL."""
    assert url.startswith("sqlite:///"), url
    return url.removeprefix("sqlite:///").split("?", 1)[0]


def sql(url: str, statement: str, params: Any = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the SQLite file behind ``url`` (to plant bad rows, to count)."""
    with sqlite3.connect(sqlite_path(url), timeout=10) as conn:
        rows = conn.execute(statement, params).fetchall()
    conn.close()
    return rows


@asynccontextmanager
async def running(app: Underway, **options: Any) -> AsyncIterator[Worker]:
    """Run a worker for ``app`` in this event loop for the duration of the block.

    Defaults suit tests: four jobs at once, a quick poll. On exit the worker is stopped at
    once (running jobs are handed back) unless the test stopped it already.
    """
    options.setdefault("concurrency", 4)
    options.setdefault("poll", 0.05)
    worker = app.worker(**options)
    task = asyncio.create_task(worker.run())
    started = asyncio.create_task(worker.started())
    await asyncio.wait([task, started], timeout=5, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        started.cancel()
        task.result()  # raises what the worker raised
        raise AssertionError("the worker stopped before it started")
    assert started.done(), "the worker did not start within 5 s"
    try:
        yield worker
    finally:
        worker.kill()
        await asyncio.wait_for(task, 10)


async def wait_until(
    predicate: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 5.0,
    interval: float = 0.01,
    what: str = "the condition",
) -> None:
    """Poll ``predicate`` (sync or async) until it is true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        await asyncio.sleep(interval)


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append one line to ``path`` with O_APPEND, so that concurrent writers never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    """The lines of ``path``, or none if it does not exist yet."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except FileNotFoundError:
        return []


class WorkerProcess:
    """``underway worker APP`` (or any ``underway`` command) in a child process.

    Its output goes to a file rather than a pipe, so that a chatty child never blocks on a
    full pipe while the test is busy elsewhere.
    """

    def __init__(
        self,
        *args: str,
        url: str,
        log: str | os.PathLike[str],
        output: str | os.PathLike[str],
        extra_env: dict[str, str] | None = None,
    ) -> None:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "UNDERWAY_URL": url,
            "UNDERWAY_TEST_LOG": os.fspath(log),
            **(extra_env or {}),
        }
        self.output_path = Path(output)
        with open(self.output_path, "ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "underway", *args],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    @classmethod
    def worker(
        cls,
        app: str,
        *options: str,
        url: str,
        log: str | os.PathLike[str],
        output: str | os.PathLike[str],
    ) -> WorkerProcess:
        """Start ``underway worker APP OPTIONS`` and wait until it takes jobs."""
        child = cls("worker", app, *options, url=url, log=log, output=output)
        child.wait_for("started: queues")
        return child

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 15.0, count: int = 1) -> None:
        """Wait until the output holds ``text`` (``count`` times); fail if the child exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.output().count(text) >= count:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.process.kill()
        self.process.wait()
        raise AssertionError(f"never saw {text!r}; output was:\n{self.output()}")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed."""
        self.process.kill()
        self.process.wait()

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for the child to exit; return its status (fail if it does not exit)."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"the child did not exit within {timeout} s; output:\n{self.output()}"
            ) from None

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.kill()
