"""The bridge: add_task with a durable task stores a job before the response is sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException

import underway
from tests.background_helpers import serve
from underway import JobStatus, Underway
from underway.errors import SerializationError
from underway.fastapi import BackgroundTasks, install


@pytest.fixture
async def uw(tmp_path: Path) -> AsyncIterator[Underway]:
    app = Underway(f"sqlite:///{tmp_path / 'bridge.db'}")
    yield app
    await app.close()


def _app(uw: Underway, calls: list[str]) -> FastAPI:
    app = FastAPI()

    @uw.task(name="bridge.send")
    async def send(to: str) -> str:
        return f"sent to {to}"

    def note(message: str) -> None:
        calls.append(message)

    @app.post("/ok")
    async def ok(to: str, background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(send, to)
        background_tasks.add_task(note, f"noted {to}")
        return {"status": "ok"}

    @app.post("/fails")
    async def fails(to: str, background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(send, to)
        raise HTTPException(status_code=409, detail="refused")

    return app


async def _call(app: Any, path: str, on_start: Any) -> int:
    """Drive one POST through the ASGI app, calling ``on_start`` at response start."""
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            await on_start()

    path_only, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path_only, "raw_path": path_only.encode(),
        "query_string": query.encode(), "headers": [], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80), "root_path": "",
    }  # fmt: skip
    await app(scope, receive, send)
    return status


async def test_the_job_is_stored_before_the_response_starts(uw: Underway) -> None:
    calls: list[str] = []
    app = _app(uw, calls)
    seen: list[dict[str, Any]] = []

    async def at_start() -> None:
        backend = await uw.backend()
        jobs = await backend.list_jobs()
        seen.append({"jobs": [(j.task_name, j.status) for j in jobs], "calls": list(calls)})

    assert await _call(app, "/ok?to=kim", at_start) == 200
    # When the response started, the durable job was stored and the plain task not yet run.
    assert seen == [{"jobs": [("bridge.send", JobStatus.QUEUED)], "calls": []}]
    assert calls == ["noted kim"]  # ran after the response
    (job,) = await (await uw.backend()).list_jobs()
    handle = await uw.get_job(job.id)
    assert handle is not None and handle.args == ("kim",)


async def test_a_failing_endpoint_stores_no_job(uw: Underway) -> None:
    app = _app(uw, [])

    async def nothing() -> None:
        pass

    assert await _call(app, "/fails?to=lee", nothing) == 409
    assert await (await uw.backend()).count_jobs() == {}


def test_add_task_checks_the_arguments_of_a_durable_task_at_once(tmp_path: Path) -> None:
    uw = Underway(f"sqlite:///{tmp_path / 'x.db'}")

    @uw.task
    async def remember(value: int) -> None:
        pass

    tasks = underway.BackgroundTasks()
    with pytest.raises(SerializationError, match="value"):
        tasks.add_task(remember, object())  # type: ignore[arg-type]
    assert tasks.durable == [] and tasks.tasks == []


async def test_install_runs_a_worker_and_loops_in_the_app(tmp_path: Path) -> None:
    uw = Underway(f"sqlite:///{tmp_path / 'app.db'}")
    app = FastAPI()
    ticks: list[int] = []

    @uw.task(name="bridge.double")
    async def double(x: int) -> int:
        return 2 * x

    @underway.loop(seconds=0.05)
    async def tick() -> None:
        ticks.append(1)

    @app.post("/double")
    async def post_double(x: int, background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(double, x)
        return {"status": "queued"}

    install(app, uw, worker=True, worker_options={"concurrency": 2, "poll": 0.05}, loops=[tick])
    async with serve(app) as served:
        response = await served.client.post("/double?x=21")
        assert response.status_code == 200
        backend = await uw.backend()
        rows: list[tuple[JobStatus, bytes | None]] = []
        for _ in range(200):
            rows = [(r.status, r.result) for r in await backend.list_jobs()]
            if rows and rows[0][0] is JobStatus.SUCCEEDED:
                break
            await asyncio.sleep(0.05)
        assert rows == [(JobStatus.SUCCEEDED, b"42")]
        assert tick.is_running()
    assert not tick.is_running()  # stopped by the lifespan
    assert len(ticks) >= 1


def test_install_refuses_a_worker_without_a_queue() -> None:
    with pytest.raises(TypeError, match="needs the app's queue"):
        install(FastAPI(), worker=True)


async def test_install_mounts_the_dashboard_behind_its_token(tmp_path: Path) -> None:
    uw = Underway(f"sqlite:///{tmp_path / 'dash.db'}")
    app = FastAPI()
    install(
        app,
        uw,
        dashboard="/underway",
        dashboard_options={"token": "a-long-enough-token-for-the-dashboard-0123456789"},
    )
    async with serve(app) as served:
        anonymous = await served.client.get("/underway/", headers={"accept": "application/json"})
        assert anonymous.status_code == 401
        authorised = await served.client.get(
            "/underway/",
            headers={"authorization": "Bearer a-long-enough-token-for-the-dashboard-0123456789"},
        )
        assert authorised.status_code == 200
        assert "Queues" in authorised.text
