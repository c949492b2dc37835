"""Fixtures for the dashboard tests: an app over a SQLite file, a live server, Chromium."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from underway import Underway, current_job
from underway.dashboard import Dashboard, create_dashboard
from underway.task import Task
from underway.worker import Worker

T = TypeVar("T")
TOKEN = "test-token-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"


@dataclass
class Tasks:
    """The tasks of the test app, and what they have done."""

    ok: Task[[int], int]
    boom: Task[[str], None]
    flaky: Task[[], str]
    slow: Task[[int, float], int]
    flaky_runs: list[int] = field(default_factory=list)


def build_app(path: Path) -> tuple[Underway, Tasks]:
    """Return an app over the SQLite file ``path`` with the tasks the tests use."""
    uw = Underway(f"sqlite:///{path}")
    runs: list[int] = []

    @uw.task(name="ok", retries=0)
    async def ok(x: int) -> int:
        return x * 2

    @uw.task(name="boom", retries=0)
    async def boom(text: str) -> None:
        raise ValueError(f"boom: {text}")

    @uw.task(name="flaky", retries=0)
    async def flaky() -> str:
        runs.append(len(runs) + 1)
        if len(runs) == 1:
            raise RuntimeError("first run fails")
        return "second run worked"

    @uw.task(name="slow", queue="slow", retries=0)
    async def slow(steps: int, pause: float) -> int:
        for step in range(1, steps + 1):
            await asyncio.sleep(pause)
            current_job().progress(step / steps, f"step {step} of {steps}")
        return steps

    @uw.loop(minutes=5, name="every-5-min")
    async def report() -> None:
        return None

    return uw, Tasks(ok, boom, flaky, slow, runs)


@pytest.fixture
def app_and_tasks(tmp_path: Path) -> tuple[Underway, Tasks]:
    """An app over a fresh SQLite file."""
    return build_app(tmp_path / "queue.db")


@pytest.fixture
def uw(app_and_tasks: tuple[Underway, Tasks]) -> Underway:
    """The app alone."""
    return app_and_tasks[0]


@pytest.fixture
def tasks(app_and_tasks: tuple[Underway, Tasks]) -> Tasks:
    """The app's tasks."""
    return app_and_tasks[1]


async def run_until_idle(uw: Underway, seconds: float = 0.6) -> Worker:
    """Run a worker for a moment so that the due jobs run, then stop it."""
    worker = uw.worker(lease=1.0, poll=0.05, schedules=False)
    running = asyncio.create_task(worker.run())
    await worker.started()
    await asyncio.sleep(seconds)
    worker.stop()
    await running
    return worker


def client_for(app: Dashboard, **headers: str) -> httpx.AsyncClient:
    """An HTTP client that calls the dashboard in this process (no network)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=headers
    )


@pytest.fixture
async def client(uw: Underway) -> AsyncIterator[httpx.AsyncClient]:
    """A client authenticated by the Bearer header, on a dashboard with the test token."""
    async with client_for(create_dashboard(uw, token=TOKEN), authorization=f"Bearer {TOKEN}") as c:
        yield c
    await uw.close()


# -- a real server, for the browser ---------------------------------------------------------


class LiveServer:
    """Uvicorn serving the dashboard, and a worker, on an event loop in a thread."""

    def __init__(self, uw: Underway, app: Dashboard) -> None:
        self.uw = uw
        self.app = app
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dashboard-server", daemon=True)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(15) or self._error is not None:
            raise RuntimeError(f"the dashboard server did not start: {self._error!r}")

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.01)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        worker = self.uw.worker(lease=1.0, poll=0.05, concurrency=4, grace=1.0)
        working = asyncio.create_task(worker.run())
        await worker.started()
        self._ready.set()
        await self._stop.wait()
        worker.stop()
        await working
        server.should_exit = True
        await serving
        await self.uw.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the server's event loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        if self._error is not None:
            raise self._error


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Tasks]]:
    """A live server with a worker over a fresh SQLite file, for the whole module."""
    uw, tasks = build_app(tmp_path_factory.mktemp("live") / "queue.db")
    server = LiveServer(uw, create_dashboard(uw, token=TOKEN))
    server.start()
    yield server, tasks
    server.stop()


# -- Chromium -------------------------------------------------------------------------------

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """Return Debian's Chromium; skip without it, or fail when running in CI."""
    path = os.environ.get("UNDERWAY_CHROMIUM") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        path = shutil.which("chromium") or ""
    if not path:
        message = (
            "Chromium is not installed, so the dashboard's browser tests cannot run: "
            "run scripts/ensure-chromium.sh (apt-get install chromium)."
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + " CI=true: browser tests must run in CI.")
        pytest.skip(message)
    return path
