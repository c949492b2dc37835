"""The dashboard's Starlette application: pages, actions, JSON for live updates, metrics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import orjson
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from underway.app import Underway
from underway.backends.base import Backend
from underway.errors import UnderwayError
from underway.job import ACTIVE_STATUSES, FINISHED_STATUSES, JobRecord, JobStatus

from . import metrics, stats
from .guard import Guard, route_path, session_cookie
from .security import Session, Sessions, generate_token, origin_allowed, safe_next

__all__ = ["MAX_LIMIT", "MAX_OFFSET", "Dashboard", "create_dashboard"]

logger = logging.getLogger("underway.dashboard")
UTC = timezone.utc
HERE = Path(__file__).parent

#: The most jobs one page lists.
MAX_LIMIT = 500
#: The furthest one can page into a list of jobs (filter to go further).
MAX_OFFSET = 100_000
#: The longest queue name, task name or job id accepted in a filter.
MAX_TEXT = 200
#: "Older than" choices of the purge form, in seconds.
PURGE_AGES = {"0s": 0, "1h": 3600, "1d": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
#: The messages an action's redirect may ask a page to show.
NOTICES = {
    "retried": "The job was queued again.",
    "cancelled": "The job was cancelled.",
    "cancel-requested": "Cancel requested: its worker stops the job at its next heartbeat.",
    "purged": "Finished jobs were purged.",
}


class Problem(Exception):
    """A request the dashboard refuses, with the status and the message to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Dashboard(Starlette):
    """The dashboard application (a Starlette app); build it with :func:`create_dashboard`.

    Attributes:
        token: The access token (``None`` when authentication is off).
        read_only: Whether actions are refused.
    """

    token: str | None
    read_only: bool


def create_dashboard(
    uw: Underway,
    *,
    token: str | None = None,
    read_only: bool = False,
    insecure_no_auth: bool = False,
    stale_after: float | timedelta = 30.0,
    metrics_window: int = 5000,
    title: str = "underway",
) -> Dashboard:
    """Build the dashboard for an app's queue.

    Args:
        uw: The app whose store the dashboard shows.
        token: The access token every request must carry (16 characters or more). When
            not given, one is generated with :mod:`secrets` and logged at WARNING level;
            read it from the returned app's ``token``.
        read_only: Hide the actions (retry, cancel, purge) and refuse them with 403.
        insecure_no_auth: Turn authentication off, for local development only. CSRF
            protection stays on.
        stale_after: Seconds (or a timedelta) after its last heartbeat that a worker is
            shown as stale rather than live.
        metrics_window: How many of the most recent jobs the per-task metrics cover.
        title: The name shown in the page header.

    Returns:
        A Starlette app: serve it with uvicorn, or mount it in yours (see :func:`mount`).

    Raises:
        ValueError: A token was given together with ``insecure_no_auth``, or it is too
            short.
    """
    if insecure_no_auth and token is not None:
        raise ValueError("pass either token= or insecure_no_auth=True, not both.")
    if insecure_no_auth:
        logger.warning(
            "The underway dashboard is running WITHOUT AUTHENTICATION (insecure_no_auth): "
            "anyone who can reach it can see and change the queue. Use this only on a "
            "development machine."
        )
    elif token is None:
        token = generate_token()
        logger.warning("underway dashboard access token (generated): %s", token)
    sessions = Sessions(token)
    stale = stale_after if isinstance(stale_after, timedelta) else timedelta(seconds=stale_after)
    views = _Views(uw, sessions, read_only, stale, metrics_window, title)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await uw.close()

    app = Dashboard(
        routes=views.routes(),
        lifespan=lifespan,
        exception_handlers={Problem: views.problem, HTTPException: views.http_error},
    )
    app.token = token
    app.read_only = read_only
    app.add_middleware(Guard, sessions=sessions, unauthorized=views.unauthorized)
    return app


def _ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    seconds = (now - value).total_seconds()
    if abs(seconds) < 1:
        return "just now"  # also hides the skew between the store's clock and this one
    text = _span(abs(seconds))
    return f"in {text}" if seconds < 0 else f"{text} ago"


def _span(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 90:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"


def _between(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    return _span(max((end - start).total_seconds(), 0.0))


def _timestamp(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _progress_text(record: JobRecord) -> str:
    if record.progress is None:
        return ""
    text = f"{record.progress * 100:.0f}%"
    return f"{text} {record.progress_message}" if record.progress_message else text


def _text(value: str | None, name: str) -> str | None:
    """Validate a free-text filter: bounded length, no control characters."""
    if value is None or value == "":
        return None
    if len(value) > MAX_TEXT or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise Problem(400, f"{name} must be at most {MAX_TEXT} printable characters.")
    return value


def _integer(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise Problem(400, f"{name} must be a whole number from {low} to {high}.")
    number = int(value)
    if not low <= number <= high:
        raise Problem(400, f"{name} must be from {low} to {high}, got {number}.")
    return number


def _status(value: str | None) -> JobStatus | None:
    if value is None or value == "":
        return None
    try:
        return JobStatus(value)
    except ValueError:
        names = ", ".join(s.value for s in JobStatus)
        raise Problem(400, f"status must be one of {names}.") from None


def _pretty(data: bytes | None, decode: Any) -> str:
    if data is None:
        return ""
    try:
        value = decode(data)
    except (UnderwayError, ValueError, TypeError):
        return data.decode("utf-8", "replace")
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        return repr(value)


class _Views:
    """The request handlers, sharing one dashboard's settings."""

    def __init__(
        self,
        uw: Underway,
        sessions: Sessions,
        read_only: bool,
        stale_after: timedelta,
        metrics_window: int,
        title: str,
    ) -> None:
        if not 0 <= metrics_window <= metrics.MAX_WINDOW:
            raise ValueError(f"metrics_window must be from 0 to {metrics.MAX_WINDOW} jobs.")
        self.uw = uw
        self.sessions = sessions
        self.read_only = read_only
        self.stale_after = stale_after
        self.metrics_window = metrics_window
        self.title = title
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.overview, name="overview"),
            Route("/jobs", self.jobs, name="jobs"),
            Route("/jobs/{job_id}", self.job, name="job"),
            Route("/jobs/{job_id}/retry", self.retry, methods=["POST"], name="retry"),
            Route("/jobs/{job_id}/cancel", self.cancel, methods=["POST"], name="cancel"),
            Route("/purge", self.purge, methods=["POST"], name="purge"),
            Route("/schedules", self.schedules, name="schedules"),
            Route("/workers", self.workers, name="workers"),
            Route("/api/overview", self.api_overview, name="api_overview"),
            Route("/api/jobs/{job_id}", self.api_job, name="api_job"),
            Route("/metrics", self.metrics, name="metrics"),
            Route("/login", self.login_form, methods=["GET"], name="login"),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"], name="logout"),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]

    # -- rendering ------------------------------------------------------------------------

    def render(
        self, request: HTTPConnection, name: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        base = request.scope.get("root_path", "")
        session: Session | None = request.scope.get("state", {}).get("underway_session")
        now = datetime.now(UTC)

        def url(path: str, **params: Any) -> str:
            query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
            return f"{base}{path}" + (f"?{query}" if query else "")

        html = self.env.get_template(name).render(
            title=self.title,
            base=base,
            url=url,
            path=route_path(request.scope),
            session=session,
            csrf=session.csrf if session else "",
            auth_required=self.sessions.auth_required,
            read_only=self.read_only,
            now=now,
            ago=lambda value: _ago(value, now),
            between=_between,
            timestamp=_timestamp,
            progress_text=_progress_text,
            statuses=stats.STATUS_ORDER,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    @staticmethod
    def _wants_json(request: HTTPConnection) -> bool:
        path = route_path(request.scope)
        if path.startswith("/api/") or path == "/metrics":
            return True
        accept = request.headers.get("accept", "")
        return "text/html" not in accept and "application/json" in accept

    async def unauthorized(self, request: HTTPConnection) -> Response:
        headers = {"www-authenticate": 'Bearer realm="underway"'}
        message = "Authentication required: send the dashboard token."
        if self._wants_json(request) or "text/html" not in request.headers.get("accept", ""):
            return JSONResponse({"error": message}, status_code=401, headers=headers)
        target = route_path(request.scope) + (f"?{request.url.query}" if request.url.query else "")
        base = request.scope.get("root_path", "")
        response = self.render(request, "login.html", 401, next=base + target, error=None)
        response.headers.update(headers)
        return response

    async def problem(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        if self._wants_json(request):
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        return self.render(request, "error.html", exc.status, message=exc.message)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return await self.problem(request, Problem(exc.status_code, exc.detail))

    async def backend(self) -> Backend:
        return await self.uw.backend()

    # -- pages ----------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        backend = await self.backend()
        now = datetime.now(UTC)
        queues = await stats.queue_rows(backend)
        running = await stats.running_jobs(backend)
        workers = await stats.worker_rows(backend, now, self.stale_after, running)
        finished = await stats.recent_finished(backend, since=now - timedelta(hours=1, minutes=1))
        chart = stats.chart(finished.records, now, complete_from=finished.complete_from)
        return self.render(
            request,
            "overview.html",
            queues=queues,
            running=running[:50],
            workers=workers,
            chart=chart,
            shape=self._overview_shape(queues, running[:50], workers),
            notice=NOTICES.get(request.query_params.get("done", "")),
        )

    @staticmethod
    def _overview_shape(
        queues: list[stats.QueueRow], running: list[JobRecord], workers: list[stats.WorkerRow]
    ) -> str:
        return "|".join(
            [
                ",".join(q.queue for q in queues),
                ",".join(r.id for r in running),
                ",".join(f"{w.info.id}:{w.live}" for w in workers),
            ]
        )

    async def api_overview(self, request: Request) -> Response:
        backend = await self.backend()
        now = datetime.now(UTC)
        queues = await stats.queue_rows(backend)
        running = await stats.running_jobs(backend)
        workers = await stats.worker_rows(backend, now, self.stale_after, running)
        values: dict[str, Any] = {}
        for row in queues:
            for status in stats.STATUS_ORDER:
                values[f"count:{row.queue}:{status.value}"] = row.counts.get(status, 0)
            values[f"count:{row.queue}:total"] = row.total
        for record in running[:50]:
            values[f"progress:{record.id}"] = record.progress
            values[f"progress-text:{record.id}"] = _progress_text(record)
        for worker in workers:
            values[f"heartbeat:{worker.info.id}"] = _ago(worker.info.heartbeat_at, now)
            values[f"busy:{worker.info.id}"] = len(worker.jobs)
        values["workers-live"] = sum(1 for w in workers if w.live)
        values["running-total"] = len(running)
        shape = self._overview_shape(queues, running[:50], workers)
        return JSONResponse({"shape": shape, "values": values})

    async def jobs(self, request: Request) -> Response:
        params = request.query_params
        job_id = _text(params.get("id"), "id")
        if job_id is not None:
            job_id = job_id.strip()
            if await (await self.backend()).get_job(job_id) is None:
                raise Problem(404, f"There is no job with id {job_id!r}.")
            return RedirectResponse(f"{request.scope.get('root_path', '')}/jobs/{job_id}", 303)
        queue = _text(params.get("queue"), "queue")
        task = _text(params.get("task"), "task")
        status = _status(params.get("status"))
        limit = _integer(params.get("limit"), "limit", 50, 1, MAX_LIMIT)
        offset = _integer(params.get("offset"), "offset", 0, 0, MAX_OFFSET)
        backend = await self.backend()
        records = await backend.list_jobs(
            queue=queue, status=status, task_name=task, limit=limit + 1, offset=offset
        )
        has_next = len(records) > limit and offset + limit <= MAX_OFFSET
        queues = sorted((await backend.count_jobs()).keys())
        filters = {"queue": queue, "status": status.value if status else None, "task": task}
        return self.render(
            request,
            "jobs.html",
            records=records[:limit],
            filters=filters,
            limit=limit,
            offset=offset,
            has_next=has_next,
            prev_offset=max(offset - limit, 0) if offset > 0 else None,
            queue_names=queues,
            task_names=sorted(self.uw.tasks),
            purge_ages=list(PURGE_AGES),
            final_statuses=[s for s in stats.STATUS_ORDER if s in FINISHED_STATUSES],
            notice=self._notice(request),
        )

    def _notice(self, request: Request) -> str | None:
        done = request.query_params.get("done", "")
        notice = NOTICES.get(done)
        if done == "purged":
            count = request.query_params.get("n", "")
            if count.isdigit() and len(count) < 10:
                notice = f"Purged {int(count)} finished job(s)."
        return notice

    async def _record(self, request: Request) -> JobRecord:
        job_id = request.path_params["job_id"]
        if len(job_id) > MAX_TEXT:
            raise Problem(400, f"A job id has at most {MAX_TEXT} characters.")
        try:
            record = await (await self.backend()).get_job(job_id)
        except UnderwayError as exc:
            raise Problem(500, f"The job {job_id!r} cannot be read: {exc}") from exc
        if record is None:
            raise Problem(404, f"There is no job with id {job_id!r}.")
        return record

    async def job(self, request: Request) -> Response:
        record = await self._record(request)
        serializer = self.uw.serializer
        return self.render(
            request,
            "job.html",
            job=record,
            arguments=_pretty(record.payload, orjson.loads),
            result=_pretty(record.result, serializer.loads_result),
            can_retry=record.status in (JobStatus.FAILED, JobStatus.DEAD),
            can_cancel=record.status in ACTIVE_STATUSES and not record.cancel_requested,
            notice=self._notice(request),
            known_task=record.task_name in self.uw.tasks,
        )

    async def api_job(self, request: Request) -> Response:
        record = await self._record(request)
        values = {
            "status": record.status.value,
            "progress": record.progress,
            "progress-text": _progress_text(record),
            "attempts": f"{record.attempts}/{record.max_attempts}",
        }
        shape = f"{record.status.value}:{record.cancel_requested}:{record.attempts}"
        return JSONResponse({"shape": shape, "values": values})

    async def schedules(self, request: Request) -> Response:
        backend = await self.backend()
        rows = await stats.schedule_rows(self.uw.schedules, backend, datetime.now(UTC))
        return self.render(request, "schedules.html", rows=rows)

    async def workers(self, request: Request) -> Response:
        backend = await self.backend()
        now = datetime.now(UTC)
        running = await stats.running_jobs(backend)
        rows = await stats.worker_rows(backend, now, self.stale_after, running)
        return self.render(request, "workers.html", workers=rows, stale_after=self.stale_after)

    async def metrics(self, request: Request) -> Response:
        families = await metrics.collect(
            await self.backend(),
            self.uw.schedules,
            now=datetime.now(UTC),
            window=self.metrics_window,
            stale_after=self.stale_after,
        )
        return Response(metrics.render(families), media_type=metrics.CONTENT_TYPE)

    # -- actions --------------------------------------------------------------------------

    async def _checked_form(self, request: Request, *, action: bool = True) -> FormData:
        """Refuse an action that read-only mode, the Origin check or CSRF forbid."""
        if action and self.read_only:
            raise Problem(403, "This dashboard is read-only: actions are turned off.")
        if not origin_allowed(request):
            raise Problem(403, "Cross-origin request refused.")
        async with request.form(max_files=0, max_fields=20, max_part_size=4096) as form:
            session: Session | None = request.state.underway_session
            submitted = form.get("csrf")
            if session is None or not self.sessions.csrf_valid(
                session, submitted if isinstance(submitted, str) else None
            ):
                raise Problem(403, "CSRF token missing or wrong: reload the page and try again.")
            return form

    def _to_job(self, request: Request, job_id: str, done: str) -> Response:
        base = request.scope.get("root_path", "")
        return RedirectResponse(f"{base}/jobs/{job_id}?{urlencode({'done': done})}", 303)

    async def retry(self, request: Request) -> Response:
        await self._checked_form(request)
        record = await self._record(request)
        if record.status not in (JobStatus.FAILED, JobStatus.DEAD):
            raise Problem(
                409, f"Only failed or dead jobs are retried; this one is {record.status}."
            )
        changed = await (await self.backend()).requeue(record.id)
        if changed is None or changed.status is not JobStatus.QUEUED:
            raise Problem(409, "The job was not queued again: another job holds its unique key.")
        logger.info("Dashboard: job %s of task %r retried.", record.id, record.task_name)
        return self._to_job(request, record.id, "retried")

    async def cancel(self, request: Request) -> Response:
        await self._checked_form(request)
        record = await self._record(request)
        if record.status not in ACTIVE_STATUSES:
            raise Problem(
                409, f"Only waiting or running jobs are cancelled; this one is {record.status}."
            )
        changed = await (await self.backend()).cancel(record.id)
        logger.info("Dashboard: job %s of task %r cancelled.", record.id, record.task_name)
        done = (
            "cancel-requested" if changed is not None and changed.cancel_requested else "cancelled"
        )
        return self._to_job(request, record.id, done)

    async def purge(self, request: Request) -> Response:
        form = await self._checked_form(request)
        age = form.get("older_than", "7d")
        if not isinstance(age, str) or age not in PURGE_AGES:
            raise Problem(400, f"older_than must be one of {', '.join(PURGE_AGES)}.")
        chosen = [_status(s if isinstance(s, str) else "") for s in form.getlist("status")]
        statuses = [s for s in chosen if s is not None]
        if any(s not in FINISHED_STATUSES for s in statuses):
            raise Problem(
                400, "Only finished jobs (succeeded, failed, cancelled, dead) are purged."
            )
        count = await (await self.backend()).purge(
            timedelta(seconds=PURGE_AGES[age]), statuses or None
        )
        logger.info("Dashboard: purged %d finished job(s) older than %s.", count, age)
        base = request.scope.get("root_path", "")
        return RedirectResponse(f"{base}/jobs?{urlencode({'done': 'purged', 'n': count})}", 303)

    # -- login ----------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        base = request.scope.get("root_path", "")
        target = safe_next(request.query_params.get("next"), base)
        return self.render(request, "login.html", next=target, error=None)

    async def login(self, request: Request) -> Response:
        base = request.scope.get("root_path", "")
        if not origin_allowed(request):
            raise Problem(403, "Cross-origin request refused.")
        async with request.form(max_files=0, max_fields=5, max_part_size=4096) as form:
            token, target = form.get("token"), form.get("next")
        destination = safe_next(target if isinstance(target, str) else None, base)
        if self.sessions.auth_required and not (
            isinstance(token, str) and self.sessions.token_matches(token.strip())
        ):
            logger.warning("Dashboard: a login with a wrong token was refused.")
            return self.render(
                request, "login.html", 401, next=destination, error="That token is not right."
            )
        value, _ = self.sessions.new_cookie()
        response = RedirectResponse(destination, 303)
        response.headers.append("set-cookie", session_cookie(request, value))
        return response

    async def logout(self, request: Request) -> Response:
        await self._checked_form(request, action=False)
        base = request.scope.get("root_path", "")
        response = RedirectResponse(f"{base}/login", 303)
        response.headers.append("set-cookie", session_cookie(request, "", max_age=0))
        return response
