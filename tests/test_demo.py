"""`underway demo` (what `make demo` runs): the app serves, jobs run, Ctrl-C stops it."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import httpx

from tests.subprocess_helpers import Child
from underway import JobStatus, Underway


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_the_demo_serves_the_tutorial_and_runs_durable_jobs(tmp_path: Path) -> None:
    port = _free_port()
    child = Child("-m", "underway", "demo", "--port", str(port), cwd=tmp_path)
    try:
        child.wait_for("Application startup complete", timeout=30)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as client:
            assert (await client.post("/items?name=pen")).json()["status"] == "ok"
            assert (await client.post("/register?name=kim")).status_code == 200
            refused = await client.post("/export?item=r&fail=true")
            assert refused.status_code == 409
        uw = Underway(f"sqlite:///{tmp_path / 'underway-demo.db'}")
        try:
            backend = await uw.backend()
            statuses: dict[str, tuple[JobStatus, float | None]] = {}
            for _ in range(200):
                records = await backend.list_jobs()
                statuses = {r.task_name: (r.status, r.progress) for r in records}
                welcome = statuses.get("demo.send_welcome_email", (None, None))
                if (
                    statuses.get("demo.notify_admin", (None,))[0] is JobStatus.SUCCEEDED
                    and (welcome[1] or 0) > 0
                ):
                    break
                await asyncio.sleep(0.05)
        finally:
            await uw.close()
        assert statuses["demo.notify_admin"][0] is JobStatus.SUCCEEDED
        assert (statuses["demo.send_welcome_email"][1] or 0) > 0  # progress reported
        assert "demo.flaky_export" not in statuses  # the failed request enqueued nothing
        log = (tmp_path / "underway-demo.log").read_text(encoding="utf-8")
        assert "아이템 생성: pen" in log and "[admin] 신규 가입: kim" in log
    finally:
        child.signal(signal.SIGINT)
        code, output = child.finish(timeout=30)
    assert code == 0, output
    assert "curl -X POST" in output
    assert "Worker" in output and "stopped" in output
