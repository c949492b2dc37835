"""The SQLite backend's schema, queries and row codec (runs on the database thread).

Kept apart from :mod:`underway.backends.sqlite` so that each module stays one concept: this
one knows the tables, the other the contract.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any, TypeVar

import orjson

from underway.backends.base import reported_status
from underway.errors import BackendError, CorruptRecordError
from underway.job import JobRecord, JobStatus, WorkerInfo

__all__ = [
    "QUERIES",
    "connect",
    "decode_job",
    "decode_worker",
    "from_us",
    "insert_params",
    "list_query",
    "load_migrations",
    "migrate",
    "to_us",
    "transaction",
    "update_params",
    "with_placeholders",
    "worker_params",
]

logger = logging.getLogger("underway.backends.sqlite")

T = TypeVar("T")
UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_SQL = resources.files("underway.backends").joinpath("sql").joinpath("sqlite")
#: ``RETURNING`` arrived in SQLite 3.35.
MIN_SQLITE = (3, 35, 0)


def _load_queries() -> dict[str, str]:
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in _SQL.joinpath("queries.sql").read_text("utf-8").splitlines():
        if line.startswith("-- name:"):
            current = queries.setdefault(line.removeprefix("-- name:").strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in queries.items()}


#: The named queries of ``sql/sqlite/queries.sql``.
QUERIES: Mapping[str, str] = _load_queries()


def with_placeholders(sql: str, name: str, count: int) -> str:
    """Replace ``{name}`` in ``sql`` with ``count`` question marks (never with values)."""
    return sql.replace("{" + name + "}", ", ".join("?" * count))


def load_migrations() -> list[tuple[int, str, str]]:
    """Return ``(version, file name, SQL)`` for every migration, in version order."""
    found = []
    for entry in _SQL.joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text("utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"SQLite migrations must be numbered 1, 2, 3, ...; found {versions}")
    return found


def split_statements(script: str) -> list[str]:
    """Split an SQL script into statements (``executescript`` would commit mid-migration)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in buffer.splitlines()
    ):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer!r}")
    return statements


def transaction(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(conn, *args)`` in one ``BEGIN IMMEDIATE`` transaction.

    The write lock is taken before anything is read, so the transaction never has to upgrade
    a read lock (which can fail with SQLITE_BUSY without waiting) and sees no other writer.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations the database lacks; return its schema version."""

    def apply(conn: sqlite3.Connection) -> int:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
        current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        version: int = current[0]
        migrations = load_migrations()
        latest = migrations[-1][0] if migrations else 0
        if version > latest:
            raise BackendError(
                f"the database has schema version {version}, newer than this version of "
                f"underway knows ({latest}); upgrade underway."
            )
        for number, name, script in migrations:
            if number <= version:
                continue
            logger.info("applying SQLite migration %s", name)
            for statement in split_statements(script):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
            version = number
        return version

    return transaction(conn, apply)


def _enable_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    # Switching a new file to WAL needs a moment of exclusive access, and SQLite reports
    # "database is locked" at once, without waiting for busy_timeout, when another
    # connection opens the same new file at that moment. Retry within busy_timeout.
    deadline = time.monotonic() + busy_timeout
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def connect(path: str, busy_timeout: float, synchronous: str) -> sqlite3.Connection:
    """Open ``path`` in WAL mode, set it up and migrate it."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise BackendError(
            f"underway needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; this Python "
            f"has {sqlite3.sqlite_version}. Use a newer Python build."
        )
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        _enable_wal(conn, busy_timeout)
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


# -- values <-> columns ---------------------------------------------------------------------


def to_us(value: datetime) -> int:
    """An aware datetime as microseconds since the Unix epoch."""
    return (value - EPOCH) // _MICROSECOND


@functools.lru_cache(maxsize=4096)
def from_us(value: int) -> datetime:
    """Microseconds since the Unix epoch as an aware UTC datetime.

    Cached: the jobs of a batch share their times (enqueued, started, lease expiry).
    """
    return EPOCH + timedelta(microseconds=value)


def _opt_us(value: datetime | None) -> int | None:
    return None if value is None else to_us(value)


def insert_params(job: JobRecord) -> dict[str, Any]:
    """The parameters of the ``insert_job`` query."""
    return {
        "id": job.id,
        "task_name": job.task_name,
        "queue": job.queue,
        "payload": job.payload,
        "status": job.status.value,
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "enqueued_at": to_us(job.enqueued_at),
        "scheduled_at": to_us(job.scheduled_at),
        "unique_key": job.unique_key,
    }


def update_params(job: JobRecord) -> dict[str, Any]:
    """The parameters of the ``update_job`` query."""
    return {
        "id": job.id,
        "status": job.status.value,
        "attempts": job.attempts,
        "scheduled_at": to_us(job.scheduled_at),
        "started_at": _opt_us(job.started_at),
        "finished_at": _opt_us(job.finished_at),
        "lease_owner": job.lease_owner,
        "lease_expires_at": _opt_us(job.lease_expires_at),
        "lease_token": job.lease_token,
        "result": job.result,
        "error": job.error,
        "traceback": job.traceback,
        "progress": job.progress,
        "progress_message": job.progress_message,
        "cancel_requested": int(job.cancel_requested),
        "dead_reason": job.dead_reason,
    }


def worker_params(info: WorkerInfo, now: datetime) -> dict[str, Any]:
    """The parameters of the ``upsert_worker`` query; the heartbeat is ``now``."""
    return {
        "id": info.id,
        "hostname": info.hostname,
        "pid": info.pid,
        "queues": orjson.dumps(list(info.queues)).decode(),
        "concurrency": info.concurrency,
        "started_at": to_us(info.started_at),
        "heartbeat_at": to_us(now),
        "metadata": orjson.dumps(dict(info.metadata)).decode(),
    }


class _Reader:
    """Typed access to one row's columns; a wrong type raises CorruptRecordError."""

    def __init__(self, row: sqlite3.Row) -> None:
        self.row = row
        self.id = row["id"]

    def _bad(self, column: str) -> CorruptRecordError:
        return CorruptRecordError(
            f"job {self.id!r}: column {column} holds {self.row[column]!r}, "
            "which underway did not write"
        )

    def text(self, column: str) -> str:
        value = self.row[column]
        if not isinstance(value, str):
            raise self._bad(column)
        return value

    def opt_text(self, column: str) -> str | None:
        return None if self.row[column] is None else self.text(column)

    def blob(self, column: str) -> bytes:
        value = self.row[column]
        if isinstance(value, str):  # written as TEXT by hand: still the same payload
            return value.encode()
        if not isinstance(value, bytes):
            raise self._bad(column)
        return value

    def opt_blob(self, column: str) -> bytes | None:
        return None if self.row[column] is None else self.blob(column)

    def integer(self, column: str) -> int:
        value = self.row[column]
        if not isinstance(value, int):
            raise self._bad(column)
        return value

    def time(self, column: str) -> datetime:
        try:
            return from_us(self.integer(column))
        except OverflowError:
            raise self._bad(column) from None

    def opt_time(self, column: str) -> datetime | None:
        return None if self.row[column] is None else self.time(column)

    def opt_float(self, column: str) -> float | None:
        value = self.row[column]
        if value is None:
            return None
        if not isinstance(value, (int, float)):
            raise self._bad(column)
        return float(value)

    def status(self) -> JobStatus:
        try:
            return JobStatus(self.row["status"])
        except ValueError:
            raise self._bad("status") from None


#: The columns of ``jobs`` in table order, as ``SELECT *`` and ``RETURNING *`` give them.
JOB_COLUMNS = (
    "seq",
    "id",
    "task_name",
    "queue",
    "payload",
    "status",
    "priority",
    "attempts",
    "max_attempts",
    "enqueued_at",
    "scheduled_at",
    "started_at",
    "finished_at",
    "lease_owner",
    "lease_expires_at",
    "lease_token",
    "unique_key",
    "result",
    "error",
    "traceback",
    "progress",
    "progress_message",
    "cancel_requested",
    "dead_reason",
)
_STATUSES = {status.value: status for status in JobStatus}
_SCHEDULED = JobStatus.SCHEDULED


def _opt(value: Any, kind: type) -> bool:
    return value is None or type(value) is kind


def decode_job(row: sqlite3.Row, now: datetime) -> JobRecord:
    """Build a :class:`JobRecord` from a ``jobs`` row, reporting a due scheduled job as queued.

    Raises:
        CorruptRecordError: A column holds a value underway did not write.
    """
    # The common case, a row as underway wrote it, checked and built in one go; anything
    # else takes the column-by-column reader, which names what is wrong.
    if tuple(row.keys()) == JOB_COLUMNS:
        (_, id_, task, queue, payload, status, priority, attempts, max_attempts, enqueued,
         scheduled, started, finished, owner, expires, token, unique_key, result, error, tb,
         progress, message, cancel, dead_reason) = row  # fmt: skip
        state = _STATUSES.get(status)
        if (
            state is not None
            and type(id_) is str
            and type(task) is str
            and type(queue) is str
            and type(payload) is bytes
            and type(priority) is int
            and type(attempts) is int
            and type(max_attempts) is int
            and type(enqueued) is int
            and type(scheduled) is int
            and type(token) is int
            and type(cancel) is int
            and _opt(started, int)
            and _opt(finished, int)
            and _opt(expires, int)
            and _opt(owner, str)
            and _opt(unique_key, str)
            and _opt(result, bytes)
            and _opt(error, str)
            and _opt(tb, str)
            and _opt(message, str)
            and _opt(dead_reason, str)
            and (progress is None or type(progress) is float)
        ):
            scheduled_at = from_us(scheduled)
            if state is _SCHEDULED and scheduled_at <= now:
                state = JobStatus.QUEUED
            return JobRecord(
                id=id_,
                task_name=task,
                queue=queue,
                payload=payload,
                status=state,
                priority=priority,
                attempts=attempts,
                max_attempts=max_attempts,
                enqueued_at=from_us(enqueued),
                scheduled_at=scheduled_at,
                started_at=None if started is None else from_us(started),
                finished_at=None if finished is None else from_us(finished),
                lease_owner=owner,
                lease_expires_at=None if expires is None else from_us(expires),
                lease_token=token,
                unique_key=unique_key,
                result=result,
                error=error,
                traceback=tb,
                progress=progress,
                progress_message=message,
                cancel_requested=bool(cancel),
                dead_reason=dead_reason,
            )
    return _decode_checked(row, now)


def _decode_checked(row: sqlite3.Row, now: datetime) -> JobRecord:
    r = _Reader(row)
    scheduled_at = r.time("scheduled_at")
    return JobRecord(
        id=r.text("id"),
        task_name=r.text("task_name"),
        queue=r.text("queue"),
        payload=r.blob("payload"),
        status=reported_status(r.status(), scheduled_at, now),
        priority=r.integer("priority"),
        attempts=r.integer("attempts"),
        max_attempts=r.integer("max_attempts"),
        enqueued_at=r.time("enqueued_at"),
        scheduled_at=scheduled_at,
        started_at=r.opt_time("started_at"),
        finished_at=r.opt_time("finished_at"),
        lease_owner=r.opt_text("lease_owner"),
        lease_expires_at=r.opt_time("lease_expires_at"),
        lease_token=r.integer("lease_token"),
        unique_key=r.opt_text("unique_key"),
        result=r.opt_blob("result"),
        error=r.opt_text("error"),
        traceback=r.opt_text("traceback"),
        progress=r.opt_float("progress"),
        progress_message=r.opt_text("progress_message"),
        cancel_requested=bool(r.integer("cancel_requested")),
        dead_reason=r.opt_text("dead_reason"),
    )


def decode_worker(row: sqlite3.Row) -> WorkerInfo:
    """Build a :class:`WorkerInfo` from a ``workers`` row."""
    return WorkerInfo(
        id=row["id"],
        hostname=row["hostname"],
        pid=row["pid"],
        queues=tuple(orjson.loads(row["queues"])),
        concurrency=row["concurrency"],
        started_at=from_us(row["started_at"]),
        heartbeat_at=from_us(row["heartbeat_at"]),
        metadata=orjson.loads(row["metadata"]),
    )


def list_query(
    queue: str | None,
    status: JobStatus | None,
    task_name: str | None,
    limit: int,
    offset: int,
    now: datetime,
) -> tuple[str, list[Any]]:
    """The SQL and parameters of ``list_jobs``; only fixed fragments enter the SQL."""
    where: list[str] = []
    params: list[Any] = []
    if queue is not None:
        where.append("queue = ?")
        params.append(queue)
    if task_name is not None:
        where.append("task_name = ?")
        params.append(task_name)
    if status is JobStatus.QUEUED:
        where.append("(status = 'queued' OR (status = 'scheduled' AND scheduled_at <= ?))")
        params.append(to_us(now))
    elif status is JobStatus.SCHEDULED:
        where.append("status = 'scheduled' AND scheduled_at > ?")
        params.append(to_us(now))
    elif status is not None:
        where.append("status = ?")
        params.append(JobStatus(status).value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT * FROM jobs {clause} ORDER BY seq DESC LIMIT ? OFFSET ?", [
        *params,
        limit,
        offset,
    ]
