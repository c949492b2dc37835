"""The PostgreSQL backend's schema, queries and row codec.

Kept apart from :mod:`underway.backends.postgres` so that each module stays one concept:
this one knows the tables and the SQL, the other the contract, the connections and the
notifications. Only the backend module catches driver errors.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from importlib import resources
from typing import Any

import orjson

from underway.backends.base import reported_status
from underway.errors import BackendError
from underway.job import JobRecord, JobStatus, Release, WorkerInfo

__all__ = [
    "Queries",
    "decode_job",
    "decode_worker",
    "enqueue_args",
    "list_query",
    "load_migrations",
    "lock_key",
    "migrate",
    "quote_ident",
    "release_args",
    "update_args",
    "worker_args",
]

logger = logging.getLogger("underway.backends.postgres")

_SQL = resources.files("underway.backends").joinpath("sql").joinpath("postgres")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def quote_ident(name: str) -> str:
    """Quote a schema name after checking it is a plain identifier (letters, digits, _)."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"schema must be a plain identifier (letters, digits and _, at most 63, not "
            f"starting with a digit), got {name!r}."
        )
    return f'"{name}"'


def _load_queries() -> dict[str, str]:
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in _SQL.joinpath("queries.sql").read_text("utf-8").splitlines():
        if line.startswith("-- name:"):
            current = queries.setdefault(line.removeprefix("-- name:").strip(), [])
        elif current is not None and not line.startswith("--"):
            current.append(line)
    return {name: "\n".join(lines).strip().rstrip(";") for name, lines in queries.items()}


_TEMPLATES: Mapping[str, str] = _load_queries()


class Queries:
    """The named queries of ``sql/postgres/queries.sql`` for one schema."""

    def __init__(self, schema: str) -> None:
        quoted = quote_ident(schema)
        self._sql = {name: sql.replace("{schema}", quoted) for name, sql in _TEMPLATES.items()}
        self.schema = schema
        self.quoted = quoted

    def __getitem__(self, name: str) -> str:
        return self._sql[name]


def load_migrations() -> list[tuple[int, str, str]]:
    """Return ``(version, file name, SQL)`` for every migration, in version order."""
    found = []
    for entry in _SQL.joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text("utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"PostgreSQL migrations must be numbered 1, 2, 3, ...; found {versions}")
    return found


def lock_key(schema: str) -> int:
    """The advisory lock (a signed 64-bit key) that serialises migrations of ``schema``."""
    digest = hashlib.blake2b(f"underway-migrate:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def migrate(conn: Any, schema: str) -> int:
    """Create ``schema`` if needed and apply the migrations it lacks; return its version.

    Everything happens in one transaction holding an advisory lock on the schema's name, so
    that processes opening a new database at the same time migrate it once: the others wait
    for the lock, then find the work done. ``conn`` is an asyncpg connection.

    Raises:
        BackendError: The schema was migrated by a newer underway.
    """
    quoted = quote_ident(schema)
    migrations = load_migrations()
    latest = migrations[-1][0] if migrations else 0
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(schema))
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        # SET LOCAL ends with the transaction: the migrations' SQL names no schema.
        await conn.execute(f"SET LOCAL search_path TO {quoted}")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY)"
        )
        version: int = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
        if version > latest:
            raise BackendError(
                f"the PostgreSQL schema {schema!r} has schema version {version}, newer than "
                f"this version of underway knows ({latest}); upgrade underway."
            )
        for number, name, script in migrations:
            if number <= version:
                continue
            logger.info("applying PostgreSQL migration %s to schema %r", name, schema)
            await conn.execute(script)
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
            version = number
    return version


# -- values <-> columns ---------------------------------------------------------------------


def enqueue_args(jobs: Sequence[JobRecord]) -> list[list[Any]]:
    """The nine parallel arrays of the ``enqueue`` query, one element per job."""
    return [
        [j.id for j in jobs],
        [j.task_name for j in jobs],
        [j.queue for j in jobs],
        [j.payload for j in jobs],
        [j.status.value for j in jobs],
        [j.priority for j in jobs],
        [j.max_attempts for j in jobs],
        [j.scheduled_at for j in jobs],
        [j.unique_key for j in jobs],
    ]


def release_args(releases: Sequence[Release]) -> list[list[Any]]:
    """The eight parallel arrays of the ``release`` query, one element per release."""
    outcomes = [r.outcome for r in releases]
    return [
        [r.lease.job_id for r in releases],
        [r.lease.token for r in releases],
        [o.kind.value for o in outcomes],
        [o.result for o in outcomes],
        [o.error for o in outcomes],
        [o.traceback for o in outcomes],
        [o.retry_at for o in outcomes],
        [o.reason for o in outcomes],
    ]


def update_args(job: JobRecord) -> list[Any]:
    """The parameters of the ``update_job`` query."""
    return [
        job.id,
        job.status.value,
        job.attempts,
        job.scheduled_at,
        job.started_at,
        job.finished_at,
        job.lease_owner,
        job.lease_expires_at,
        job.lease_token,
        job.result,
        job.error,
        job.traceback,
        job.progress,
        job.progress_message,
        job.cancel_requested,
        job.dead_reason,
    ]


def worker_args(info: WorkerInfo, now: datetime) -> list[Any]:
    """The parameters of the ``upsert_worker`` query."""
    return [
        info.id,
        info.hostname,
        info.pid,
        list(info.queues),
        info.concurrency,
        info.started_at,
        now,
        orjson.dumps(dict(info.metadata)).decode(),
    ]


def decode_job(row: Mapping[str, Any], now: datetime) -> JobRecord:
    """Build a :class:`JobRecord` from a ``jobs`` row, reporting a due scheduled job as queued.

    The columns are typed and the status is checked by the table, so every row decodes.
    """
    scheduled_at: datetime = row["scheduled_at"]
    return JobRecord(
        id=row["id"],
        task_name=row["task_name"],
        queue=row["queue"],
        payload=row["payload"],
        status=reported_status(JobStatus(row["status"]), scheduled_at, now),
        priority=row["priority"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        enqueued_at=row["enqueued_at"],
        scheduled_at=scheduled_at,
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        lease_token=row["lease_token"],
        unique_key=row["unique_key"],
        result=row["result"],
        error=row["error"],
        traceback=row["traceback"],
        progress=row["progress"],
        progress_message=row["progress_message"],
        cancel_requested=row["cancel_requested"],
        dead_reason=row["dead_reason"],
    )


def decode_worker(row: Mapping[str, Any]) -> WorkerInfo:
    """Build a :class:`WorkerInfo` from a ``workers`` row."""
    return WorkerInfo(
        id=row["id"],
        hostname=row["hostname"],
        pid=row["pid"],
        queues=tuple(row["queues"]),
        concurrency=row["concurrency"],
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
        metadata=orjson.loads(row["metadata"]),
    )


def list_query(
    quoted_schema: str,
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

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if queue is not None:
        where.append(f"queue = {param(queue)}")
    if task_name is not None:
        where.append(f"task_name = {param(task_name)}")
    if status is JobStatus.QUEUED:
        where.append(
            f"(status = 'queued' OR (status = 'scheduled' AND scheduled_at <= {param(now)}))"
        )
    elif status is JobStatus.SCHEDULED:
        where.append(f"status = 'scheduled' AND scheduled_at > {param(now)}")
    elif status is not None:
        where.append(f"status = {param(JobStatus(status).value)}")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    sql = (
        f"SELECT * FROM {quoted_schema}.jobs {clause} "
        f"ORDER BY seq DESC LIMIT {param(limit)} OFFSET {param(offset)}"
    )
    return sql, params
