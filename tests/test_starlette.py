"""underway.starlette: install(), the lifespan helper and the middleware, on Starlette apps."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message

import underway.starlette
from tests.background_helpers import http_scope, serve
from underway import BackgroundTasks
from underway.background import BackgroundRunner

LOGGER = "underway.background"


def make_app(events: list[str], **routes_kwargs: Any) -> Starlette:
    """An app whose endpoints add tasks that append to ``events``."""

    def record(name: str) -> None:
        events.append(name)

    async def arecord(name: str) -> None:
        await asyncio.sleep(0)
        events.append(name)

    def fail() -> None:
        raise RuntimeError("the mail server is down")

    async def mixed(request: Request) -> Response:
        tasks = BackgroundTasks()
        tasks.add_task(record, "sync 1")
        tasks.add_task(fail)
        tasks.add_task(arecord, "async 2")
        tasks.add_task(record, "sync 3")
        return PlainTextResponse("done", background=tasks)

    async def slow(request: Request) -> Response:
        tasks = BackgroundTasks()
        tasks.add_task(time.sleep, float(request.query_params.get("seconds", "0.2")))
        tasks.add_task(record, "slow finished")
        return PlainTextResponse("slow", background=tasks)

    async def blocked(request: Request) -> Response:
        tasks = BackgroundTasks()
        tasks.add_task(request.app.state.release.wait, 10)
        tasks.add_task(record, "released")
        return PlainTextResponse("blocked", background=tasks)

    async def state(request: Request) -> Response:
        return PlainTextResponse(str(request.state.db))

    app = Starlette(
        routes=[
            Route("/mixed", mixed),
            Route("/slow", slow),
            Route("/blocked", blocked),
            Route("/state", state),
        ],
        **routes_kwargs,
    )
    app.state.release = threading.Event()
    return app


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.ERROR]


@pytest.mark.parametrize("installed", [True, False])
async def test_tasks_run_in_order_and_a_failure_is_isolated(
    installed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[str] = []
    app = make_app(events)
    if installed:
        underway.starlette.install(app)
    async with serve(app) as served:
        response = await served.client.get("/mixed")
        assert (response.status_code, response.text) == (200, "done")
        if installed:
            await served.runner.wait_idle()
        assert events == ["sync 1", "async 2", "sync 3"]
    [record] = errors(caplog)
    assert "make_app.<locals>.fail failed; the tasks after it still run." in record.getMessage()
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "the mail server is down"


async def test_installed_app_composes_with_its_lifespan() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        events.append("app startup")
        yield {"db": "the database"}
        events.append("app shutdown")

    app = make_app(events, lifespan=lifespan)
    underway.starlette.install(app, grace=5)
    async with serve(app) as served:
        assert (await served.client.get("/state")).text == "the database"
        response = await served.client.get("/slow")  # returns before its task finishes
        assert response.text == "slow"
        assert "slow finished" not in events
    # The lifespan drained the task before the app's own shutdown code ran.
    assert events == ["app startup", "slow finished", "app shutdown"]


async def test_shutdown_past_the_grace_period_names_the_unfinished_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[str] = []
    app = make_app(events)
    underway.starlette.install(app, grace=0.05)
    async with serve(app) as served:
        assert (await served.client.get("/blocked")).text == "blocked"
        started = time.monotonic()
    assert time.monotonic() - started < 5  # shutdown did not wait for the 10 s wait()
    [record] = errors(caplog)
    assert record.getMessage().endswith(
        ": threading.Event.wait (running), "
        "tests.test_starlette.make_app.<locals>.record (not started)."
    )
    app.state.release.set()
    await asyncio.sleep(0.05)
    assert events == []  # the task after the wait was dropped, and said so above


async def test_constructor_style_lifespan_and_middleware() -> None:
    events: list[str] = []
    app = make_app(
        events,
        lifespan=underway.starlette.lifespan(grace=5),
        middleware=[Middleware(underway.starlette.BackgroundMiddleware)],
    )
    async with serve(app) as served:
        assert isinstance(served.runner, BackgroundRunner)
        assert (await served.client.get("/blocked")).text == "blocked"
        assert served.runner.busy()  # the request did not wait: the runner has the task
        app.state.release.set()
    assert events == ["released"]


async def test_without_install_the_request_waits_for_its_tasks() -> None:
    events: list[str] = []
    async with serve(make_app(events)) as served:
        assert (await served.client.get("/slow?seconds=0.05")).text == "slow"
        assert events == ["slow finished"]


@pytest.mark.parametrize("installed", [True, False])
async def test_streaming_response_runs_tasks_after_the_last_chunk(installed: bool) -> None:
    events: list[str] = []
    loop_thread = threading.get_ident()

    def sync_task() -> None:
        events.append("sync task" if threading.get_ident() != loop_thread else "on the loop!")

    async def async_task() -> None:
        events.append("async task")

    async def stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for n in range(3):
                events.append(f"chunk {n}")
                yield f"{n};".encode()

        tasks = BackgroundTasks()
        tasks.add_task(async_task)
        tasks.add_task(sync_task)
        return StreamingResponse(chunks(), background=tasks)

    app = Starlette(routes=[Route("/stream", stream)])
    if installed:
        underway.starlette.install(app)
    async with serve(app) as served:
        body: list[bytes] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.body":
                body.append(message["body"])
                if not message.get("more_body", False):
                    events.append("body sent")

        await served.call(http_scope("/stream"), receive, send)
        if installed:
            await served.runner.wait_idle()
    assert b"".join(body) == b"0;1;2;"
    assert events == ["chunk 0", "chunk 1", "chunk 2", "body sent", "async task", "sync task"]


async def test_endpoint_that_raises_runs_no_task() -> None:
    events: list[str] = []

    async def broken(request: Request) -> Response:
        tasks = BackgroundTasks()
        tasks.add_task(events.append, "must not run")
        raise RuntimeError("endpoint failed")

    app = Starlette(routes=[Route("/broken", broken)])
    underway.starlette.install(app)
    async with serve(app) as served:
        assert (await served.client.get("/broken")).status_code == 500
    assert events == []


def test_install_refuses_misuse() -> None:
    with pytest.raises(TypeError, match="install\\(\\) takes a Starlette or FastAPI application"):
        underway.starlette.install(object())  # type: ignore[arg-type]
    app = Starlette()
    underway.starlette.install(app)
    with pytest.raises(ValueError, match="already installed on this application"):
        underway.starlette.install(app)
    with pytest.raises(ValueError, match="grace must be 0 or more"):
        underway.starlette.install(Starlette(), grace=-1)
    with pytest.raises(TypeError, match="lifespan\\(\\) takes the app's lifespan function"):
        underway.starlette.lifespan("not a lifespan")  # type: ignore[arg-type]


async def test_install_after_start_changes_nothing() -> None:
    app = Starlette()
    async with serve(app):
        pass
    lifespan_before = app.router.lifespan_context
    with pytest.raises(
        RuntimeError, match="Cannot add middleware after an application has started"
    ):
        underway.starlette.install(app)
    assert app.router.lifespan_context is lifespan_before


@pytest.fixture
def no_leftover_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        extra = [t for t in set(threading.enumerate()) - before if t.name.startswith("underway-")]
        if not extra:
            return
        time.sleep(0.01)
    raise AssertionError(f"threads left running after shutdown: {extra}")


@pytest.mark.usefixtures("no_leftover_threads")
async def test_shutdown_ends_the_runners_threads() -> None:
    events: list[str] = []
    app = make_app(events)
    underway.starlette.install(app)
    async with serve(app) as served:
        for _ in range(5):
            await served.client.get("/slow?seconds=0.01")
    assert events == ["slow finished"] * 5
