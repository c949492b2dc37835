"""install(app): at startup, endpoints get the request's tasks as FastAPI's own parameter.

Which routes are prepared that way (routes added after install(), included routers,
nested ones; not routes added once the app serves, nor endpoints that also ask for
FastAPI's own tasks), and that what endpoints see does not change: one instance per
request, shared with dependencies, no tasks when the endpoint raises, durable jobs stored
before the response starts, the same OpenAPI schema and validation errors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import fastapi
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import Message

import underway
import underway.fastapi
from tests.background_helpers import http_scope, serve
from underway import JobStatus, Underway
from underway.fastapi import BackgroundTasks


def record(events: list[str], name: str) -> None:
    events.append(name)


async def arecord(events: list[str], name: str) -> None:
    events.append(name)


def dependants(app: FastAPI) -> dict[str, Dependant]:
    """The dependant that serves each HTTP path of ``app``, included routers' too."""
    found: dict[str, Dependant] = {}
    for context in fastapi.routing.iter_route_contexts(app.router.routes):
        if isinstance(context.original_route, fastapi.routing.APIRoute):
            assert context.path is not None
            found[context.path] = context.dependant
    return found


def direct(dependant: Dependant) -> bool:
    """Whether the endpoint gets the tasks as FastAPI's own parameter (no dependency)."""
    calls = [sub.call for sub in dependant.dependencies]
    return (
        dependant.background_tasks_param_name is not None
        and underway.fastapi.request_background_tasks not in calls
    )


def tasks_app(events: list[str], seen: list[object]) -> FastAPI:
    app = FastAPI()

    @app.get("/before")
    async def before(background_tasks: BackgroundTasks) -> str:
        seen.append(background_tasks)
        background_tasks.add_task(record, events, "before")
        return "ok"

    return app


async def test_routes_added_after_install_and_included_routers_are_prepared() -> None:
    events: list[str] = []
    seen: list[object] = []
    app = tasks_app(events, seen)
    underway.fastapi.install(app)

    @app.get("/after")
    def after(background_tasks: BackgroundTasks) -> str:  # a def endpoint: in a thread
        seen.append(background_tasks)
        background_tasks.add_task(arecord, events, "after")
        return "ok"

    inner = APIRouter()

    @inner.get("/deep")
    async def deep(request: Request, background_tasks: BackgroundTasks) -> str:
        seen.append(background_tasks)
        background_tasks.add_task(record, events, f"deep {request.url.path}")
        return "ok"

    outer = APIRouter(dependencies=[Depends(lambda: None)])

    @outer.get("/items/{item_id}")
    async def item(item_id: int, background_tasks: BackgroundTasks) -> dict[str, int]:
        seen.append(background_tasks)
        background_tasks.add_task(record, events, f"item {item_id}")
        return {"item_id": item_id}

    outer.include_router(inner, prefix="/inner")
    app.include_router(outer, prefix="/v1")
    assert not any(direct(d) for d in dependants(app).values())

    async with serve(app) as served:
        prepared = dependants(app)
        assert {path for path, d in prepared.items() if direct(d)} == {
            "/before",
            "/after",
            "/v1/items/{item_id}",
            "/v1/inner/deep",
        }
        for path in ("/before", "/after", "/v1/items/7", "/v1/inner/deep"):
            response = await served.client.get(path)
            assert response.status_code == 200, (path, response.text)
            await served.runner.wait_idle()
    assert events == ["before", "after", "item 7", "deep /v1/inner/deep"]
    assert [type(tasks) for tasks in seen] == [underway.BackgroundTasks] * 4


async def test_a_route_added_once_the_app_serves_takes_the_dependency() -> None:
    events: list[str] = []
    seen: list[object] = []
    app = tasks_app(events, seen)
    underway.fastapi.install(app)
    async with serve(app) as served:

        @app.get("/late")
        async def late(background_tasks: BackgroundTasks) -> str:
            seen.append(background_tasks)
            background_tasks.add_task(record, events, "late")
            return "ok"

        assert not direct(dependants(app)["/late"])
        assert (await served.client.get("/late")).status_code == 200
        await served.runner.wait_idle()
    assert events == ["late"]
    assert type(seen[0]) is underway.BackgroundTasks


async def test_without_install_no_route_is_prepared() -> None:
    events: list[str] = []
    seen: list[object] = []
    app = tasks_app(events, seen)
    async with serve(app) as served:
        assert not direct(dependants(app)["/before"])
        assert (await served.client.get("/before")).status_code == 200
    assert events == ["before"]


async def add_from_dependency(request: Request, background_tasks: BackgroundTasks) -> str:
    request.app.state.seen.append(background_tasks)
    background_tasks.add_task(record, request.app.state.events, "dependency")
    return "d"


async def test_fastapis_own_parameter_gets_the_same_instance() -> None:
    events: list[str] = []
    seen: list[object] = []
    app = FastAPI()
    app.state.events, app.state.seen = events, seen

    @app.get("/both")
    async def both(
        value: Annotated[str, Depends(add_from_dependency)],
        own: fastapi.BackgroundTasks,
        background_tasks: BackgroundTasks,
    ) -> str:
        seen.extend([own, background_tasks])
        own.add_task(record, events, "fastapi's")
        background_tasks.add_task(record, events, "underway's")
        return value

    underway.fastapi.install(app)
    async with serve(app) as served:
        # FastAPI's own parameter is taken: the endpoint keeps the dependency.
        assert not direct(dependants(app)["/both"])
        assert (await served.client.get("/both")).json() == "d"
        await served.runner.wait_idle()
    assert events == ["dependency", "fastapi's", "underway's"]
    assert len(seen) == 3 and all(tasks is seen[0] for tasks in seen)
    assert type(seen[0]) is underway.BackgroundTasks


async def test_prepared_endpoint_shares_with_dependencies_and_runs_nothing_if_it_raises() -> None:
    events: list[str] = []
    seen: list[object] = []
    app = FastAPI()
    app.state.events, app.state.seen = events, seen

    @app.post("/orders/{order_id}")
    async def order(
        order_id: int,
        value: Annotated[str, Depends(add_from_dependency)],
        background_tasks: BackgroundTasks = None,  # type: ignore[assignment]
    ) -> str:
        seen.append(background_tasks)
        background_tasks.add_task(record, events, f"order {order_id}")
        if order_id == 0:
            raise HTTPException(404, "no such order")
        return value

    underway.fastapi.install(app)
    async with serve(app) as served:
        assert direct(dependants(app)["/orders/{order_id}"])
        assert (await served.client.post("/orders/0")).status_code == 404
        assert (await served.client.post("/orders/5")).json() == "d"
        await served.runner.wait_idle()
    assert events == ["dependency", "order 5"]  # nothing of the request that raised
    assert seen[0] is seen[1] and seen[2] is seen[3] and seen[0] is not seen[2]


async def test_prepared_routes_keep_their_schema_and_validation_errors() -> None:
    app = FastAPI()
    errors: list[RequestValidationError] = []

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, q: str, background_tasks: BackgroundTasks) -> str:
        return q

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors.append(exc)
        return JSONResponse({"invalid": True}, status_code=422)

    schema_before = app.openapi()
    app.openapi_schema = None
    underway.fastapi.install(app)
    async with serve(app) as served:
        assert direct(dependants(app)["/items/{item_id}"])
        assert (await served.client.get("/items/x?q=1")).status_code == 422
        assert (await served.client.get("/items/3?q=hi")).json() == "hi"
        assert (await served.client.get("/openapi.json")).json() == schema_before
    # The error names the endpoint's own file and function, not underway's wrapper.
    [error] = errors
    assert error.endpoint_ctx is not None
    assert error.endpoint_ctx.get("file") == __file__
    assert error.endpoint_ctx.get("function") == "read_item"


@pytest.fixture
async def uw(tmp_path: Path) -> AsyncIterator[Underway]:
    app = Underway(f"sqlite:///{tmp_path / 'routes.db'}")
    yield app
    await app.close()


@pytest.mark.parametrize("endpoint_kind", ["async", "def"])
async def test_durable_jobs_of_a_prepared_endpoint_are_stored_before_the_response(
    uw: Underway, endpoint_kind: str
) -> None:
    events: list[str] = []
    app = FastAPI()

    @uw.task(name="routes.send")
    async def send(to: str) -> str:
        return f"sent to {to}"

    if endpoint_kind == "async":

        @app.post("/send/{to}")
        async def post_send(to: str, background_tasks: BackgroundTasks) -> str:
            background_tasks.add_task(send, to)
            background_tasks.add_task(record, events, f"noted {to}")
            if to == "nobody":
                raise HTTPException(409, "refused")
            return "ok"

    else:

        @app.post("/send/{to}")
        def post_send_def(to: str, background_tasks: BackgroundTasks) -> str:
            assert threading.current_thread() is not threading.main_thread()
            background_tasks.add_task(send, to)
            background_tasks.add_task(record, events, f"noted {to}")
            if to == "nobody":
                raise HTTPException(409, "refused")
            return "ok"

    underway.fastapi.install(app, uw)
    at_start: list[dict[str, Any]] = []
    async with serve(app) as served:
        assert direct(dependants(app)["/send/{to}"])
        backend = await uw.backend()

        async def call(path: str) -> int:
            status = 0

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send_message(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    jobs = await backend.list_jobs()
                    at_start.append(
                        {"jobs": [(j.task_name, j.status) for j in jobs], "events": list(events)}
                    )

            await served.call(http_scope(path, "POST"), receive, send_message)
            return status

        assert await call("/send/nobody") == 409
        assert await call("/send/kim") == 200
        await served.runner.wait_idle()
        jobs = await backend.list_jobs()
    assert at_start == [
        {"jobs": [], "events": []},  # the endpoint raised: nothing stored, nothing run
        {"jobs": [("routes.send", JobStatus.QUEUED)], "events": []},
    ]
    assert events == ["noted kim"]
    [job] = jobs
    handle = await uw.get_job(job.id)
    assert handle is not None and handle.args == ("kim",)


async def test_routes_that_cannot_be_read_keep_the_dependency(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # As a FastAPI whose routing internals differ would: the app still serves.
    def unreadable(routes: object) -> None:
        raise AttributeError("no such routing internals")

    events: list[str] = []
    seen: list[object] = []
    app = tasks_app(events, seen)
    underway.fastapi.install(app)
    monkeypatch.setattr(fastapi.routing, "iter_route_contexts", unreadable)
    async with serve(app) as served:
        assert (await served.client.get("/before")).status_code == 200
        await served.runner.wait_idle()
    monkeypatch.undo()
    assert not direct(dependants(app)["/before"])
    assert events == ["before"]
    assert type(seen[0]) is underway.BackgroundTasks
    [warning] = [r for r in caplog.records if r.name == "underway.fastapi"]
    assert warning.levelno == logging.WARNING
    assert "resolve it as a dependency instead" in warning.getMessage()
