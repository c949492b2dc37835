"""Every example of the FastAPI BackgroundTasks tutorial runs on underway (examples/fastapi_*.py).

Each example is the tutorial's code with only the import of ``BackgroundTasks`` changed. Each
test runs it as the tutorial wrote it and again with ``underway.fastapi.install(app)``.
"""

from __future__ import annotations

import asyncio
import logging
import runpy
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import Message

import underway.fastapi
from tests.background_helpers import http_scope, serve
from tests.subprocess_helpers import ROOT
from underway.starlette import STATE_KEY

EXAMPLES = ROOT / "examples"


def load(name: str, installed: bool) -> dict[str, Any]:
    namespace = runpy.run_path(str(EXAMPLES / name), run_name=f"example_{name[:-3]}")
    if installed:
        underway.fastapi.install(namespace["app"])
    return namespace


def log_lines(directory: Path) -> list[str]:
    return (directory / "log.txt").read_text(encoding="utf-8").splitlines()


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the examples write log.txt in the current directory
    return tmp_path


def awaited_coroutines(task: asyncio.Task[Any]) -> list[str]:
    """Names of the coroutines that ``task`` is inside, outermost first."""
    names = []
    coro: Any = task.get_coro()
    while coro is not None and hasattr(coro, "cr_code"):
        names.append(coro.cr_code.co_name)
        coro = coro.cr_await
    return names


INSTALLED = pytest.mark.parametrize("installed", [False, True], ids=["as-is", "installed"])


@INSTALLED
async def test_basic(installed: bool, in_tmp: Path) -> None:
    ns = load("fastapi_basic.py", installed)
    async with serve(ns["app"]) as served:
        for name in ("book", "pen"):
            response = await served.client.post("/items", params={"name": name})
            assert response.json() == {"message": f"아이템 '{name}' 생성됨", "status": "ok"}
    assert log_lines(in_tmp) == ["아이템 생성: book", "아이템 생성: pen"]


@INSTALLED
async def test_add_task_answers_before_the_slow_email(
    installed: bool, in_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ns = load("fastapi_add_task.py", installed)
    async with serve(ns["app"]) as served:
        body_sent = asyncio.Event()
        body: list[bytes] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.body":
                body.append(message["body"])
                if not message.get("more_body"):
                    body_sent.set()

        request = asyncio.create_task(served.call(http_scope("/signup", "POST"), receive, send))
        await asyncio.wait_for(body_sent.wait(), 1)  # well before send_email's two seconds
        assert b"".join(body) == b'{"message":"ok"}'
        for _ in range(500):  # write_log runs first, in a thread; then send_email sleeps 2 s
            if "send_email" in awaited_coroutines(request):
                break
            await asyncio.sleep(0.01)
        assert "send_email" in awaited_coroutines(request)
        assert log_lines(in_tmp) == ["메시지"]
        # Cancel the request, as a server whose shutdown timeout ran out would.
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    [record] = [r for r in caplog.records if r.name == "underway.background"]
    assert record.levelno == logging.ERROR
    assert record.getMessage().endswith("signup.<locals>.send_email (running).")


@INSTALLED
async def test_multiple_tasks_run_in_order(installed: bool, in_tmp: Path) -> None:
    ns = load("fastapi_multiple.py", installed)
    async with serve(ns["app"]) as served:
        response = await served.client.post("/register", params={"name": "kim"})
        assert response.json() == {"message": "'kim' 등록 완료"}
    assert log_lines(in_tmp) == [
        "환영 이메일: kim",
        "관리자 알림: 신규 가입: kim",
        "사용자 등록: kim",
    ]


@INSTALLED
async def test_dependency_adds_the_task(installed: bool, in_tmp: Path) -> None:
    ns = load("fastapi_dependency.py", installed)
    async with serve(ns["app"]) as served:
        response = await served.client.post("/items", params={"name": "book"})
        assert response.json() == {"message": "아이템 'book' 생성됨"}
    assert log_lines(in_tmp) == ["[감사] 아이템 생성: book"]


@INSTALLED
async def test_notification(installed: bool) -> None:
    ns = load("fastapi_notification.py", installed)
    async with serve(ns["app"]) as served:
        response = await served.client.post("/send-notification", params={"email": "a@b.kr"})
        assert response.json() == {"message": "'a@b.kr'에 알림 발송 예정"}
    assert ns["task_log"] == ["알림 발송: a@b.kr"]


@INSTALLED
async def test_order_steps(installed: bool) -> None:
    ns = load("fastapi_order.py", installed)
    async with serve(ns["app"]) as served:
        for item in ("pen", "ink"):
            response = await served.client.post("/order", params={"item": item})
            assert response.json() == {"message": f"주문 완료: {item}"}
    assert ns["task_log"] == [
        f"{step}: {item}"
        for item in ("pen", "ink")
        for step in ("주문 확인", "재고 차감", "알림 발송")
    ]


@INSTALLED
async def test_error_handling(
    installed: bool, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # important_task does nothing visible when it succeeds (its body is the tutorial's
    # "pass"): it prints only on failure, and underway logs only on failure.
    ns = load("fastapi_error_handling.py", installed)
    async with serve(ns["app"]) as served:
        response = await served.client.post("/important", params={"data": "x"})
        assert response.json() == {"message": "ok"}
    assert capsys.readouterr().out == ""
    assert [r for r in caplog.records if r.name == "underway.background"] == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_end_to_end_under_uvicorn() -> None:
    ns = load("fastapi_order.py", installed=True)
    app = ns["app"]
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "uvicorn stopped before it started"
        await asyncio.sleep(0.01)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        responses = await asyncio.gather(
            *(client.post("/order", params={"item": f"item{n}"}) for n in range(20))
        )
    assert [r.json() for r in responses] == [{"message": f"주문 완료: item{n}"} for n in range(20)]
    runner = server.lifespan.state[STATE_KEY]
    await runner.wait_idle()
    server.should_exit = True
    await asyncio.wait_for(serving, 10)
    log: list[str] = ns["task_log"]
    assert len(log) == 60
    for n in range(20):  # each request's three steps, in the order added
        steps = [line for line in log if line.endswith(f": item{n}")]
        assert steps == [f"{step}: item{n}" for step in ("주문 확인", "재고 차감", "알림 발송")]
