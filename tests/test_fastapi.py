"""underway.fastapi: the injected BackgroundTasks annotation and install()."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Any

import fastapi
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

import underway
import underway.fastapi
from tests.background_helpers import serve
from underway.fastapi import BackgroundTasks

LOGGER = "underway.background"


# Module level: FastAPI resolves the string annotations (PEP 563) in the module's globals.
def record(request: Request, name: str) -> None:
    request.app.state.events.append(name)


async def arecord(request: Request, name: str) -> None:
    request.app.state.events.append(name)


def innermost(request: Request, background_tasks: BackgroundTasks) -> str:
    # A plain def dependency: FastAPI calls it in its thread pool.
    request.app.state.seen.append(background_tasks)
    background_tasks.add_task(record, request, "innermost")
    return "i"


async def middle(
    request: Request, inner: Annotated[str, Depends(innermost)], background_tasks: BackgroundTasks
) -> str:
    request.app.state.seen.append(background_tasks)
    background_tasks.add_task(arecord, request, "middle")
    return inner + "m"


def nested_app(events: list[str], seen: list[object]) -> FastAPI:
    """Endpoint -> dependency -> sub-dependency, each adding a task to the request's tasks."""
    app = FastAPI()
    app.state.events = events
    app.state.seen = seen

    @app.post("/nested")
    async def nested(
        request: Request,
        value: Annotated[str, Depends(middle)],
        again: Annotated[str, Depends(innermost)],  # cached: innermost runs once
        background_tasks: BackgroundTasks = None,  # type: ignore[assignment]
    ) -> dict[str, str]:
        seen.append(background_tasks)
        background_tasks.add_task(record, request, "endpoint")
        return {"value": value + again}

    @app.post("/sync-endpoint")
    def sync_endpoint(request: Request, background_tasks: BackgroundTasks) -> dict[str, str]:
        seen.append(background_tasks)
        background_tasks.add_task(arecord, request, "from a def endpoint")
        return {"ok": "yes"}

    return app


@pytest.mark.parametrize("installed", [True, False])
async def test_one_instance_shared_by_endpoint_and_nested_dependencies(installed: bool) -> None:
    events: list[str] = []
    seen: list[object] = []
    app = nested_app(events, seen)
    if installed:
        underway.fastapi.install(app)
    async with serve(app) as served:
        response = await served.client.post("/nested")
        assert response.json() == {"value": "imi"}
        if installed:
            await served.runner.wait_idle()
        assert events == ["innermost", "middle", "endpoint"]
        assert len(seen) == 3
        assert all(tasks is seen[0] for tasks in seen)
        assert type(seen[0]) is underway.BackgroundTasks

        response = await served.client.post("/nested")  # a new request, a new instance
        assert seen[3] is not seen[0]
        if installed:  # tasks of different requests have no order between them
            await served.runner.wait_idle()
        assert (await served.client.post("/sync-endpoint")).json() == {"ok": "yes"}
    assert events == ["innermost", "middle", "endpoint"] * 2 + ["from a def endpoint"]


@pytest.mark.parametrize("exception", [HTTPException(404, "no such item"), ValueError("bug")])
async def test_tasks_of_an_endpoint_that_raises_do_not_run(exception: Exception) -> None:
    events: list[str] = []
    app = FastAPI()

    @app.post("/items")
    async def create(background_tasks: BackgroundTasks) -> None:
        background_tasks.add_task(events.append, "must not run")
        raise exception

    underway.fastapi.install(app)
    async with serve(app) as served:
        response = await served.client.post("/items")
        assert response.status_code == (404 if isinstance(exception, HTTPException) else 500)
    assert events == []


async def test_failing_task_leaves_the_response_and_later_tasks_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[str] = []
    app = FastAPI()

    def send_email(to: str) -> None:
        raise ConnectionError(f"cannot reach the mail server for {to}")

    @app.post("/signup")
    async def signup(background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(send_email, "kim@example.com")
        background_tasks.add_task(events.append, "logged")
        return {"status": "ok"}

    underway.fastapi.install(app)
    async with serve(app) as served:
        response = await served.client.post("/signup")
        assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert events == ["logged"]
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.ERROR
    assert record.__dict__["underway_task"] == f"{__name__}.{send_email.__qualname__}"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ConnectionError)


async def test_own_and_streaming_responses_get_the_tasks() -> None:
    events: list[str] = []
    app = FastAPI()
    loop_thread = threading.get_ident()

    def in_thread(name: str) -> None:
        events.append(name if threading.get_ident() != loop_thread else f"{name} ON THE LOOP")

    @app.get("/plain", response_class=PlainTextResponse)
    async def plain(background_tasks: BackgroundTasks) -> PlainTextResponse:
        background_tasks.add_task(in_thread, "plain")
        return PlainTextResponse("text")

    @app.get("/stream")
    async def stream(background_tasks: BackgroundTasks) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for n in range(3):
                events.append(f"chunk {n}")
                yield b"x"

        background_tasks.add_task(in_thread, "after the stream")
        return StreamingResponse(chunks())

    underway.fastapi.install(app)
    async with serve(app) as served:
        assert (await served.client.get("/plain")).text == "text"
        assert (await served.client.get("/stream")).text == "xxx"
        await served.runner.wait_idle()
    assert events == ["plain", "chunk 0", "chunk 1", "chunk 2", "after the stream"]


async def test_drain_on_shutdown_waits_then_reports(caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()
    slow_started = asyncio.Event()
    hang_started = asyncio.Event()
    events: list[str] = []

    async def waits_for_release() -> None:
        hang_started.set()
        await release.wait()
        events.append("released")

    async def sleep_then_record() -> None:
        slow_started.set()
        await asyncio.sleep(0.1)

    app = FastAPI()

    @app.post("/finishes")
    async def finishes(background_tasks: BackgroundTasks) -> str:
        background_tasks.add_task(sleep_then_record)
        background_tasks.add_task(events.append, "slow task finished")
        return "ok"

    @app.post("/hangs")
    async def hangs(background_tasks: BackgroundTasks) -> str:
        background_tasks.add_task(waits_for_release)
        return "ok"

    underway.fastapi.install(app, grace=0.2)
    async with serve(app) as served:
        finishing = asyncio.create_task(served.client.post("/finishes"))
        hanging = asyncio.create_task(served.client.post("/hangs"))
        await asyncio.wait_for(asyncio.gather(slow_started.wait(), hang_started.wait()), 5)
    assert events == ["slow task finished"]  # it finished before the lifespan exited
    assert (await finishing).status_code == 200
    # The runner cancelled the request task that ran the coroutine; here that task is the
    # test's client call, since httpx's ASGITransport runs the app in the caller's task.
    assert hanging.cancelled()
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.__dict__["underway_unfinished"] == [
        f"{__name__}.{waits_for_release.__qualname__}"
    ]
    assert "grace period of 0.2 s ran out" in record.getMessage()


def test_underway_background_tasks_annotation_gets_fastapis_instance() -> None:
    # Documented pitfall: FastAPI replaces any Starlette BackgroundTasks subclass by its own.
    app = FastAPI()
    got: list[object] = []

    @app.get("/")
    async def endpoint(tasks: underway.BackgroundTasks) -> None:
        got.append(tasks)

    async def call() -> None:
        async with serve(app) as served:
            await served.client.get("/")

    asyncio.run(call())
    assert type(got[0]) is fastapi.BackgroundTasks


def test_install_twice_is_refused() -> None:
    app = FastAPI()
    underway.fastapi.install(app)
    with pytest.raises(ValueError, match="already installed"):
        underway.fastapi.install(app)


def test_request_background_tasks_is_the_dependency() -> None:
    metadata: Any = BackgroundTasks.__metadata__  # type: ignore[attr-defined]
    [depends] = metadata
    assert depends.dependency is underway.fastapi.request_background_tasks
