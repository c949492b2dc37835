"""The applications that bench/background/background_bench.py serves with uvicorn.

``BENCH_FRAMEWORK`` (``starlette`` or ``fastapi``) and ``BENCH_IMPL`` (``starlette``: the
framework's own ``BackgroundTasks``; ``underway``: underway's, with ``install(app)``) pick
the app. Endpoints: ``/none`` (no task), ``/async`` and ``/sync`` (one no-op task, an
``async def`` or a plain function), ``/count`` (how many tasks have run, as text).
"""

from __future__ import annotations

import os
import threading

from fastapi import BackgroundTasks as FastAPIBackgroundTasks
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.background import BackgroundTasks as StarletteBackgroundTasks
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import underway.fastapi
import underway.starlette
from underway import BackgroundTasks as UnderwayBackgroundTasks


class Counter:
    """Counts the tasks that ran; plain tasks run in threads, so it takes a lock."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def sync_task(self) -> None:
        with self._lock:
            self.value += 1

    async def async_task(self) -> None:
        self.value += 1  # on the event loop: no other task runs meanwhile


def starlette_app(tasks_class: type[StarletteBackgroundTasks]) -> Starlette:
    counter = Counter()

    async def none(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def async_task(request: Request) -> PlainTextResponse:
        tasks = tasks_class()
        tasks.add_task(counter.async_task)
        return PlainTextResponse("ok", background=tasks)

    async def sync_task(request: Request) -> PlainTextResponse:
        tasks = tasks_class()
        tasks.add_task(counter.sync_task)
        return PlainTextResponse("ok", background=tasks)

    async def count(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(counter.value))

    return Starlette(
        routes=[
            Route("/none", none),
            Route("/async", async_task),
            Route("/sync", sync_task),
            Route("/count", count),
        ]
    )


def fastapi_app_with_fastapi_tasks() -> FastAPI:
    app = FastAPI()
    counter = Counter()

    @app.get("/none", response_class=PlainTextResponse)
    async def none() -> str:
        return "ok"

    @app.get("/async", response_class=PlainTextResponse)
    async def async_task(background_tasks: FastAPIBackgroundTasks) -> str:
        background_tasks.add_task(counter.async_task)
        return "ok"

    @app.get("/sync", response_class=PlainTextResponse)
    async def sync_task(background_tasks: FastAPIBackgroundTasks) -> str:
        background_tasks.add_task(counter.sync_task)
        return "ok"

    @app.get("/count", response_class=PlainTextResponse)
    async def count() -> str:
        return str(counter.value)

    return app


def fastapi_app_with_underway_tasks() -> FastAPI:
    # The same code as above; only the annotation comes from underway.fastapi.
    app = FastAPI()
    counter = Counter()

    @app.get("/none", response_class=PlainTextResponse)
    async def none() -> str:
        return "ok"

    @app.get("/async", response_class=PlainTextResponse)
    async def async_task(background_tasks: underway.fastapi.BackgroundTasks) -> str:
        background_tasks.add_task(counter.async_task)
        return "ok"

    @app.get("/sync", response_class=PlainTextResponse)
    async def sync_task(background_tasks: underway.fastapi.BackgroundTasks) -> str:
        background_tasks.add_task(counter.sync_task)
        return "ok"

    @app.get("/count", response_class=PlainTextResponse)
    async def count() -> str:
        return str(counter.value)

    underway.fastapi.install(app)
    return app


def make_app() -> Starlette:
    """The app that the environment variables ask for."""
    framework = os.environ.get("BENCH_FRAMEWORK", "starlette")
    impl = os.environ.get("BENCH_IMPL", "starlette")
    if framework == "starlette" and impl == "starlette":
        return starlette_app(StarletteBackgroundTasks)
    if framework == "starlette" and impl == "underway":
        app = starlette_app(UnderwayBackgroundTasks)
        underway.starlette.install(app)
        return app
    if framework == "fastapi" and impl == "starlette":
        return fastapi_app_with_fastapi_tasks()
    if framework == "fastapi" and impl == "underway":
        return fastapi_app_with_underway_tasks()
    raise SystemExit(f"unknown BENCH_FRAMEWORK={framework!r} / BENCH_IMPL={impl!r}")


app = make_app()
