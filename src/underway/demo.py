"""The demo that ``make demo`` (``underway demo``) runs: every pillar in one process.

A FastAPI app with the endpoints of the after-response tutorial, on a durable SQLite
queue (``underway-demo.db`` in the current directory):

* ``background_tasks.add_task(write_log, ...)`` runs a plain function after the response,
  in-process, exactly as in the tutorial;
* ``background_tasks.add_task(send_welcome_email, ...)``, a function registered with
  ``@uw.task``, is stored on the queue before the response is sent, and a worker running
  inside the app (``install(app, uw, worker=True)``) runs it, reporting progress;
* ``@uw.loop(seconds=20)`` is a durable schedule, enqueued once per tick;
* ``@underway.loop(seconds=10)`` is an in-process loop that prints the queue's counts.

Poke it with curl and watch the jobs with the CLI; ``underway demo`` prints how.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException

import underway
from underway import Underway
from underway.fastapi import BackgroundTasks, install

__all__ = ["app", "main", "uw"]

DEMO_DB = "underway-demo.db"
LOG_FILE = Path("underway-demo.log")

uw = Underway(f"sqlite:///{DEMO_DB}")
app = FastAPI(title="underway demo")


# -- the tutorial's in-process tasks ---------------------------------------------------------


def write_log(message: str) -> None:
    """Append a line to the demo's log file (a plain function: runs after the response)."""
    with LOG_FILE.open("a", encoding="utf-8") as log:
        log.write(f"{dt.datetime.now():%H:%M:%S} {message}\n")


# -- durable tasks: stored before the response, run by the worker ----------------------------


@uw.task(name="demo.send_welcome_email", retries=3, timeout=60)
async def send_welcome_email(name: str) -> str:
    """Pretend to send an email in five steps, reporting progress."""
    job = underway.current_job()
    for step in range(1, 6):
        await asyncio.sleep(1.0)
        job.progress(step / 5, f"step {step} of 5")
    return f"welcome email sent to {name}"


@uw.task(name="demo.notify_admin", retries=5)
def notify_admin(message: str) -> None:
    """A plain function as a durable task: the worker runs it in a thread."""
    write_log(f"[admin] {message}")


@uw.task(name="demo.flaky_export", retries=2, retry_backoff=1.0)
async def flaky_export(item: str) -> str:
    """Fails on its first attempts to show retries, then gives up: the job ends dead."""
    raise ConnectionError(f"the export service refused {item!r}")


# -- a durable schedule and an in-process loop ---------------------------------------------


@uw.loop(seconds=20, name="demo.queue_report")
async def queue_report() -> None:
    """Runs as a job once every 20 s, however many app processes run."""
    backend = await uw.backend()
    counts = await backend.count_jobs()
    summary = {q: {s.value: n for s, n in c.items()} for q, c in counts.items()}
    write_log(f"[schedule] queue report: {summary}")


@underway.loop(seconds=10)
async def print_counts() -> None:
    backend = await uw.backend()
    counts = await backend.count_jobs()
    parts = [f"{n} {s.value}" for c in counts.values() for s, n in sorted(c.items())]
    print(f"[loop] jobs: {', '.join(parts) or 'none yet'}", flush=True)


# -- the tutorial's endpoints ----------------------------------------------------------------


@app.post("/items")
async def create_item(name: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    """Tutorial section 2: one after-response task."""
    background_tasks.add_task(write_log, f"아이템 생성: {name}")
    return {"message": f"아이템 '{name}' 생성됨", "status": "ok"}


@app.post("/register")
async def register_user(name: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    """Tutorial section 4, with the email and the admin notice made durable."""
    background_tasks.add_task(send_welcome_email, name)
    background_tasks.add_task(notify_admin, f"신규 가입: {name}")
    background_tasks.add_task(write_log, f"사용자 등록: {name}")
    return {"message": f"'{name}' 등록 완료"}


def audit_logger(background_tasks: BackgroundTasks) -> Any:
    """Tutorial section 5: a dependency that adds tasks to the request's instance."""

    def log(action: str) -> None:
        background_tasks.add_task(write_log, f"[감사] {action}")

    return log


@app.post("/audited-items")
async def create_audited_item(
    name: str,
    logger: Any = Depends(audit_logger),  # noqa: B008 - the tutorial's spelling
    background_tasks: BackgroundTasks = None,  # type: ignore[assignment]
) -> dict[str, str]:
    """Shares one BackgroundTasks with the audit dependency."""
    logger(f"아이템 생성: {name}")
    return {"message": f"아이템 '{name}' 생성됨"}


@app.post("/export")
async def export(item: str, fail: bool, background_tasks: BackgroundTasks) -> dict[str, str]:
    """A durable task that fails (retried, then dead); with fail=true the endpoint raises,
    so nothing is enqueued, as FastAPI drops the tasks of a failed request."""
    background_tasks.add_task(flaky_export, item)
    if fail:
        raise HTTPException(status_code=409, detail="export refused: nothing was enqueued")
    return {"message": f"export of {item!r} enqueued"}


@app.get("/jobs/{job_id}")
async def job_status(job_id: str) -> dict[str, Any]:
    """Look a job up by id."""
    job = await uw.get_job(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id}")
    return {
        "id": job.id,
        "task": job.task_name,
        "status": job.status.value,
        "attempts": job.attempts,
        "progress": job.progress,
        "progress_message": job.progress_message,
        "error": job.error,
    }


install(app, uw, worker=True, loops=[print_counts])


INSTRUCTIONS = """\
underway demo: http://127.0.0.1:{port}  (Ctrl-C stops it gracefully)

  Jobs are stored in {db}; the in-process tasks write to {log}.

  Try, in another terminal:
    curl -X POST 'http://127.0.0.1:{port}/items?name=pen'             # after-response task
    curl -X POST 'http://127.0.0.1:{port}/register?name=kim'          # durable jobs + progress
    curl -X POST 'http://127.0.0.1:{port}/audited-items?name=book'    # dependency, shared tasks
    curl -X POST 'http://127.0.0.1:{port}/export?item=report&fail=false'  # retried, then dead
    curl -X POST 'http://127.0.0.1:{port}/export?item=report&fail=true'   # 409, nothing enqueued

  Watch the queue:
    underway jobs watch underway.demo:uw         # live progress bars
    underway jobs list underway.demo:uw          # everything, newest first
    underway jobs show underway.demo:uw JOB_ID   # one job, with its traceback if it failed
    underway schedules underway.demo:uw          # the durable schedule
    tail -f {log}
"""


def main(port: int = 8000) -> None:
    """Serve the demo on 127.0.0.1 until Ctrl-C."""
    import uvicorn

    print(INSTRUCTIONS.format(port=port, db=DEMO_DB, log=LOG_FILE), flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info")
