"""CPU per request of the bench apps, driven in-process: no server, no sockets, no HTTP.

Each app of ``background_apps.py`` is started through its lifespan and called directly as
an ASGI app with a minimal scope, ``receive`` and ``send``; after every request the loop
yields until its after-response tasks have run. The apps take turns in blocks of
``--block`` requests, ``--rounds`` times, and the median CPU time per request of each
(``time.process_time``, all threads) is printed: what a framework or underway costs per
request, free of the HTTP layer and of the load generator::

    .venv/bin/python bench/background/background_inprocess.py --framework fastapi
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from underway.background import BackgroundRunner
from underway.starlette import STATE_KEY

HERE = Path(__file__).resolve().parent
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def load_app(framework: str, impl: str) -> Any:
    os.environ["BENCH_FRAMEWORK"] = framework
    os.environ["BENCH_IMPL"] = impl
    sys.path.insert(0, str(HERE))
    try:
        module = importlib.import_module("background_apps")
        return importlib.reload(module).app
    finally:
        sys.path.remove(str(HERE))


class Started:
    """An app whose lifespan has started; ``stop()`` ends it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self.state}
        self._task = asyncio.create_task(self.app(scope, self._events.get, self._sent.put))
        await self._events.put({"type": "lifespan.startup"})
        message = await self._sent.get()
        assert message["type"] == "lifespan.startup.complete", message

    async def stop(self) -> None:
        await self._events.put({"type": "lifespan.shutdown"})
        await self._sent.get()
        assert self._task is not None
        await self._task


def http_scope(started: Started, path: str) -> dict[str, Any]:
    """A minimal scope of one GET request, with the app's lifespan state."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": dict(started.state),
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def request(started: Started, path: str) -> int:
    status = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await started.app(http_scope(started, path), receive, send)
    return status


async def count(started: Started) -> int:
    body = bytearray()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await started.app(http_scope(started, "/count"), receive, send)
    return int(body)


async def block(started: Started, path: str, n: int) -> float:
    """CPU seconds per request of ``n`` requests, their tasks included."""
    before = await count(started)
    cpu = time.process_time()
    for _ in range(n):
        status = await request(started, path)
        assert status == 200, status
    # underway's runner may still be calling plain tasks in its threads: wait for them,
    # inside the timing. The frameworks' own tasks have all run when the request returns.
    runner = started.state.get(STATE_KEY)
    if isinstance(runner, BackgroundRunner):
        await runner.wait_idle()
    elapsed = time.process_time() - cpu
    expected = 0 if path == "/none" else n
    assert await count(started) == before + expected, "a task did not run"
    return elapsed / n


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", default="fastapi", choices=("starlette", "fastapi"))
    parser.add_argument("--paths", default="/none,/async,/sync")
    parser.add_argument("--block", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    apps = {impl: Started(load_app(args.framework, impl)) for impl in ("starlette", "underway")}
    for started in apps.values():
        await started.start()
    try:
        for path in args.paths.split(","):
            figures: dict[str, list[float]] = {impl: [] for impl in apps}
            for started in apps.values():  # warm-up
                await block(started, path, args.block // 4)
            for round_ in range(args.rounds):
                order = list(apps) if round_ % 2 == 0 else list(apps)[::-1]
                for impl in order:
                    figures[impl].append(await block(apps[impl], path, args.block))
            own = statistics.median(figures["starlette"]) * 1e6
            ours = statistics.median(figures["underway"]) * 1e6
            print(
                f"{args.framework:9} {path:7} framework's {own:6.1f} us, underway {ours:6.1f} us"
                f" per request; framework's / underway {own / ours:.2f}x (>1: underway cheaper)",
                flush=True,
            )
    finally:
        for started in apps.values():
            await started.stop()


if __name__ == "__main__":
    asyncio.run(main())
