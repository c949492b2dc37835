"""The ``underway`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import re
import runpy
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from underway import runner
from underway.app import Underway
from underway.backends.base import Backend
from underway.job import JobRecord, JobStatus
from underway.worker import Worker

T = TypeVar("T")
UTC = timezone.utc

__all__ = ["main"]


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="underway")
def main() -> None:
    """underway: background work for Python."""


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("script", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--grace",
    default=runner.DEFAULT_GRACE,
    show_default=True,
    help="Seconds loops get to finish their iteration after Ctrl-C or SIGTERM.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def run(script: Path, script_args: tuple[str, ...], grace: float, verbose: bool) -> None:
    """Run SCRIPT, then every loop it started, until they have all ended.

    The script is run as __main__ with SCRIPT_ARGS in sys.argv. Ctrl-C or SIGTERM stops
    the loops gracefully. The exit status is 1 if a loop ended with an unhandled error.
    """
    _configure_logging(verbose)
    sys.argv = [str(script), *script_args]
    sys.path.insert(0, str(script.resolve().parent))
    runpy.run_path(str(script), run_name="__main__")
    loops = asyncio.run(runner.serve(grace=grace))
    failed = [lp.name for lp in loops if lp.failed()]
    if failed:
        raise click.ClickException(f"loop(s) ended with an unhandled error: {', '.join(failed)}")


@main.command()
@click.option("--port", default=8000, show_default=True, help="Port on 127.0.0.1.")
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def demo(port: int, verbose: bool) -> None:
    """Serve the demo app: after-response tasks, durable jobs, a schedule and a loop.

    Jobs go to underway-demo.db in the current directory. Ctrl-C stops it gracefully.
    """
    _configure_logging(verbose)
    try:
        from underway import demo as demo_module
    except ModuleNotFoundError as exc:
        raise click.ClickException(
            f"the demo needs FastAPI and uvicorn ({exc.name} is missing): "
            "pip install 'underway[fastapi]' uvicorn"
        ) from exc
    demo_module.main(port=port)


# -- the durable queue --------------------------------------------------------------------


def load_app(target: str) -> Underway:
    """Import ``module:attribute`` (or ``module``, finding its one ``Underway``)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {exc}. Pass 'package.module:uw' for a module "
            "importable from the current directory.",
            param_hint="APP",
        ) from exc
    if attribute:
        app = getattr(module, attribute, None)
    else:
        found = [v for v in vars(module).values() if isinstance(v, Underway)]
        app = found[0] if len(found) == 1 else None
    if not isinstance(app, Underway):
        raise click.BadParameter(
            f"{target!r} is not an underway.Underway app; pass 'module:name' where "
            "name = Underway(...).",
            param_hint="APP",
        )
    return app


def _with_backend(app: Underway, action: Callable[[Backend], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            return await action(await app.backend())
        finally:
            await app.close()

    return asyncio.run(go())


def _parse_duration(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration; use e.g. 30s, 15m, 12h or 7d.")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return timedelta(seconds=float(match.group(1)) * unit)


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    seconds = (now - when).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 90:
        text = f"{seconds:.0f}s"
    elif seconds < 5400:
        text = f"{seconds / 60:.0f}m"
    elif seconds < 172800:
        text = f"{seconds / 3600:.0f}h"
    else:
        text = f"{seconds / 86400:.0f}d"
    return f"in {text}" if future else f"{text} ago"


def _bar(progress: float | None, width: int = 12) -> str:
    if progress is None:
        return ""
    filled = round(progress * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {progress * 100:3.0f}%"


def _record_json(record: JobRecord) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in record.__slots__:
        value = getattr(record, name)
        if isinstance(value, bytes):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                value = value.decode("utf-8", "replace")
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, JobStatus):
            value = value.value
        data[name] = value
    return data


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(header, widths, strict=True))]
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def _job_rows(records: list[JobRecord], now: datetime) -> list[list[str]]:
    return [
        [
            r.id,
            r.task_name,
            r.queue,
            r.status.value,
            f"{r.attempts}/{r.max_attempts}",
            _ago(r.enqueued_at, now),
            _bar(r.progress) + (f" {r.progress_message}" if r.progress_message else ""),
        ]
        for r in records
    ]


_JOB_HEADER = ["id", "task", "queue", "status", "tries", "enqueued", "progress"]


@main.command()
@click.argument("app_path", metavar="APP")
@click.option("--queues", "-q", help="Comma-separated queues (default: every task's queue).")
@click.option(
    "--concurrency",
    "-c",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Jobs run at once.",
)
@click.option(
    "--lease",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a job stays leased without a heartbeat.",
)
@click.option(
    "--grace",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds running jobs get to finish on shutdown.",
)
@click.option("--no-schedules", is_flag=True, help="Do not claim the app's schedule ticks.")
@click.option(
    "--no-prefetch",
    is_flag=True,
    help="Lease jobs only for free slots, even while jobs are shorter than a round trip.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def worker(
    app_path: str,
    queues: str | None,
    concurrency: int,
    lease: float,
    grace: float,
    no_schedules: bool,
    no_prefetch: bool,
    verbose: bool,
) -> None:
    """Run a worker for APP (module:attribute) until Ctrl-C or SIGTERM.

    The first signal stops taking jobs and lets running ones finish within the grace
    period; a second one hands them back to the queue and exits at once.
    """
    _configure_logging(verbose)
    app = load_app(app_path)
    chosen = [q.strip() for q in queues.split(",") if q.strip()] if queues else None

    async def go() -> Worker:
        try:
            running = app.worker(
                queues=chosen,
                concurrency=concurrency,
                lease=lease,
                grace=grace,
                schedules=not no_schedules,
                prefetch=not no_prefetch,
            )
            await running.run(handle_signals=True)
            return running
        finally:
            await app.close()

    stopped = asyncio.run(go())
    if stopped.abandoned:
        # Python would wait for those threads before exiting, however long they run; their
        # jobs were already handed back or recorded, so nothing is lost by not waiting.
        logging.getLogger("underway.worker").warning(
            "Exiting without waiting for %d task function(s) still running in threads.",
            stopped.abandoned,
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@main.group()
def jobs() -> None:
    """Look at and act on the jobs in the store."""


@jobs.command("list")
@click.argument("app_path", metavar="APP")
@click.option("--queue", help="Only this queue.")
@click.option("--status", type=click.Choice([s.value for s in JobStatus]), help="Only this status.")
@click.option("--task", "task_name", help="Only this task name.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines for scripts.")
def jobs_list(
    app_path: str,
    queue: str | None,
    status: str | None,
    task_name: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List jobs, newest first, with counts per queue and status."""
    app = load_app(app_path)

    async def fetch(backend: Backend) -> tuple[list[JobRecord], dict[str, dict[JobStatus, int]]]:
        records = await backend.list_jobs(
            queue=queue,
            status=JobStatus(status) if status else None,
            task_name=task_name,
            limit=limit,
            offset=offset,
        )
        return records, await backend.count_jobs()

    records, counts = _with_backend(app, fetch)
    if as_json:
        for record in records:
            click.echo(orjson.dumps(_record_json(record)).decode())
        return
    now = datetime.now(UTC)
    summary = "; ".join(
        f"{q}: "
        + ", ".join(f"{n} {s.value}" for s, n in sorted(c.items(), key=lambda i: i[0].value))
        for q, c in sorted(counts.items())
    )
    click.echo(summary or "no jobs")
    if records:
        click.echo(_table(_job_rows(records, now), _JOB_HEADER))


@jobs.command("show")
@click.argument("app_path", metavar="APP")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def jobs_show(app_path: str, job_id: str, as_json: bool) -> None:
    """Show one job: arguments, status, timings, result or error with traceback."""
    app = load_app(app_path)
    record = _with_backend(app, lambda b: b.get_job(job_id))
    if record is None:
        raise click.ClickException(f"no job with id {job_id!r}")
    data = _record_json(record)
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    now = datetime.now(UTC)
    for key in (
        "id",
        "task_name",
        "queue",
        "status",
        "priority",
        "attempts",
        "max_attempts",
        "unique_key",
        "lease_owner",
        "dead_reason",
    ):
        if data[key] not in (None, ""):
            click.echo(f"{key.replace('_', ' '):>14}: {data[key]}")
    for key in ("enqueued_at", "scheduled_at", "started_at", "finished_at"):
        value = getattr(record, key)
        if value is not None:
            click.echo(f"{key.replace('_', ' '):>14}: {value.isoformat()} ({_ago(value, now)})")
    click.echo(f"{'arguments':>14}: {orjson.dumps(data['payload']).decode()}")
    if record.progress is not None:
        click.echo(f"{'progress':>14}: {_bar(record.progress)} {record.progress_message or ''}")
    if record.result is not None:
        click.echo(f"{'result':>14}: {orjson.dumps(data['result']).decode()}")
    if record.error:
        click.echo(f"{'error':>14}: {record.error}")
    if record.traceback:
        click.echo(record.traceback.rstrip())


@jobs.command("retry")
@click.argument("app_path", metavar="APP")
@click.argument("job_ids", nargs=-1, required=True)
def jobs_retry(app_path: str, job_ids: tuple[str, ...]) -> None:
    """Run failed, dead or cancelled jobs again."""
    app = load_app(app_path)

    async def retry(backend: Backend) -> list[tuple[str, JobRecord | None]]:
        return [(job_id, await backend.requeue(job_id)) for job_id in job_ids]

    _report_actions(_with_backend(app, retry), "queued", "retried")


@jobs.command("cancel")
@click.argument("app_path", metavar="APP")
@click.argument("job_ids", nargs=-1, required=True)
def jobs_cancel(app_path: str, job_ids: tuple[str, ...]) -> None:
    """Cancel jobs: waiting ones at once, running ones at their worker's next heartbeat."""
    app = load_app(app_path)

    async def cancel(backend: Backend) -> list[tuple[str, JobRecord | None]]:
        return [(job_id, await backend.cancel(job_id)) for job_id in job_ids]

    _report_actions(_with_backend(app, cancel), "cancelled", "cancelled")


def _report_actions(results: list[tuple[str, JobRecord | None]], goal: str, verb: str) -> None:
    failed = False
    for job_id, record in results:
        if record is None:
            click.echo(f"{job_id}: no such job", err=True)
            failed = True
        elif record.status.value == goal or record.cancel_requested:
            note = " (cancel requested; its worker stops it)" if record.cancel_requested else ""
            click.echo(f"{job_id}: {verb}{note}")
        else:
            click.echo(f"{job_id}: not {verb}, it is {record.status.value}", err=True)
            failed = True
    if failed:
        sys.exit(1)


@jobs.command("purge")
@click.argument("app_path", metavar="APP")
@click.option(
    "--older-than",
    default="7d",
    show_default=True,
    help="Finished this long ago or more (30s, 15m, 12h, 7d).",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["succeeded", "failed", "cancelled", "dead"]),
    help="Only these final statuses (repeatable; default all four).",
)
def jobs_purge(app_path: str, older_than: str, statuses: tuple[str, ...]) -> None:
    """Delete finished jobs."""
    app = load_app(app_path)
    age = _parse_duration(older_than)
    chosen = [JobStatus(s) for s in statuses] or None
    count = _with_backend(app, lambda b: b.purge(age, chosen))
    click.echo(f"purged {count} job(s) finished more than {older_than} ago")


@jobs.command("watch")
@click.argument("app_path", metavar="APP")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Draw once and exit.")
def jobs_watch(app_path: str, interval: float, once: bool) -> None:
    """Show running jobs with live progress bars until Ctrl-C."""
    app = load_app(app_path)

    async def draw_loop(backend: Backend) -> None:
        while True:
            running = await backend.list_jobs(status=JobStatus.RUNNING, limit=50)
            counts = await backend.count_jobs()
            now = datetime.now(UTC)
            lines = [f"underway: {len(running)} running  ({now.astimezone():%H:%M:%S})"]
            for q, c in sorted(counts.items()):
                lines.append(f"  {q}: " + ", ".join(f"{n} {s.value}" for s, n in c.items()))
            if running:
                lines.append(_table(_job_rows(running, now), _JOB_HEADER))
            if not once:
                click.clear()
            click.echo("\n".join(lines))
            if once:
                return
            await asyncio.sleep(interval)

    with contextlib.suppress(KeyboardInterrupt):
        _with_backend(app, draw_loop)


@main.command()
@click.argument("app_path", metavar="APP")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def schedules(app_path: str, as_json: bool) -> None:
    """List the app's durable schedules with their last and next tick."""
    app = load_app(app_path)

    async def fetch(backend: Backend) -> list[dict[str, Any]]:
        now = backend.clock()
        rows = []
        for schedule in app.schedules.values():
            last = await backend.last_schedule_tick(schedule.name)
            rows.append(
                {
                    "name": schedule.name,
                    "when": schedule.describe(),
                    "misfire": schedule.misfire,
                    "last_tick": last.isoformat() if last else None,
                    "next_tick": schedule.next_tick(now).isoformat(),
                }
            )
        return rows

    rows = _with_backend(app, fetch)
    if as_json:
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
    elif not rows:
        click.echo("no schedules: register some with @uw.loop(...) or @uw.cron(...)")
    else:
        header = ["name", "when", "misfire", "last_tick", "next_tick"]
        click.echo(_table([[str(r[h] or "-") for h in header] for r in rows], header))


@main.command()
@click.argument("app_path", metavar="APP")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--token",
    envvar="UNDERWAY_DASHBOARD_TOKEN",
    help="Access token (or UNDERWAY_DASHBOARD_TOKEN); generated and printed when not set.",
)
@click.option("--read-only", is_flag=True, help="Show the queue; refuse retry, cancel, purge.")
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="No token at all. Local development only; refused unless --host is loopback.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def dashboard(
    app_path: str,
    host: str,
    port: int,
    token: str | None,
    read_only: bool,
    insecure_no_auth: bool,
    verbose: bool,
) -> None:
    """Serve the web dashboard and Prometheus metrics (/metrics) for APP's queue."""
    try:
        import uvicorn

        from underway.dashboard import create_dashboard, generate_token
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs the 'dashboard' extra ({exc.name} is missing): "
            "pip install 'underway[dashboard]'"
        ) from exc
    _configure_logging(verbose)
    if insecure_no_auth:
        if token:
            raise click.UsageError("--insecure-no-auth and --token exclude each other.")
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise click.UsageError(
                "--insecure-no-auth serves the dashboard to anyone who can reach it; it is "
                "allowed only with --host 127.0.0.1 (or localhost, ::1). Use a token instead."
            )
    app = load_app(app_path)
    generated = not insecure_no_auth and not token
    if generated:
        token = generate_token()
    try:
        web = create_dashboard(
            app,
            token=None if insecure_no_auth else token,
            read_only=read_only,
            insecure_no_auth=insecure_no_auth,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--token") from exc
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"underway dashboard for {app.url} on http://{shown}:{port}/")
    if generated:
        click.echo(f"Access token (generated; set --token or UNDERWAY_DASHBOARD_TOKEN): {token}")
    uvicorn.run(web, host=host, port=port, log_level="debug" if verbose else "info")
