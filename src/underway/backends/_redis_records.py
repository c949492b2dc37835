"""The Redis backend's URL, and how it writes script arguments and reads their replies.

A job is a hash of byte strings (field names are :class:`~underway.job.JobRecord`'s);
times are integer microseconds since the Unix epoch. Optional strings are sent to the
scripts as ``""`` (none) or ``"="`` followed by the value, so that an empty string and a
missing one stay apart.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from underway.backends.base import reported_status
from underway.errors import CorruptRecordError
from underway.job import JobRecord, JobStatus, NewJob, OutcomeKind, Release, WorkerInfo

__all__ = [
    "decode_job",
    "decode_leased",
    "decode_worker",
    "encode_worker",
    "from_us",
    "load_script",
    "new_job_args",
    "opt",
    "parse_url",
    "release_args",
    "to_us",
    "unpack_record",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_OWN_OPTIONS = ("prefix", "retry_for")
_DRIVER_OPTIONS = (
    "db",
    "socket_timeout",
    "socket_connect_timeout",
    "health_check_interval",
    "client_name",
    "max_connections",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_check_hostname",
)


class RedisConfig(NamedTuple):
    """What a Redis URL (and the constructor's arguments) configure."""

    driver_url: str  # the URL for redis-py, without underway's own options
    prefix: str
    retry_for: float
    db: int
    where: str  # scheme, host, port and database, for messages: never the password


def parse_url(url: str, prefix: str | None, retry_for: float | None) -> RedisConfig:
    """Split a ``redis://`` or ``rediss://`` URL into underway's options and redis-py's.

    ``prefix`` and ``retry_for``, when given, override the URL's.

    Raises:
        ValueError: The URL or an option is malformed or unknown.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"{url!r} is not a Redis URL; write redis://host:6379/0.")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(options) - set(_OWN_OPTIONS) - set(_DRIVER_OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown redis:// options {sorted(unknown)}; supported: "
            f"{', '.join(_OWN_OPTIONS + _DRIVER_OPTIONS)}."
        )
    chosen = prefix if prefix is not None else options.get("prefix", "underway")
    if not chosen or any(c.isspace() for c in chosen):
        raise ValueError(f"prefix must be a non-empty name without spaces, not {chosen!r}.")
    try:
        seconds = float(retry_for if retry_for is not None else options.get("retry_for", 5))
    except ValueError:
        raise ValueError(f"retry_for must be a number of seconds in {url!r}.") from None
    if seconds < 0:
        raise ValueError(f"retry_for must not be negative, got {seconds:g}.")
    driver = {k: v for k, v in options.items() if k in _DRIVER_OPTIONS}
    try:
        db = int(driver.get("db") or parts.path.strip("/") or 0)
        port = parts.port or 6379
    except ValueError:
        raise ValueError(
            f"the port and database in {url!r} must be numbers, e.g. redis://host:6379/0."
        ) from None
    where = f"{parts.scheme}://{parts.hostname or 'localhost'}:{port}/{db}"
    driver_url = urlunsplit(parts._replace(query=urlencode(driver)))
    return RedisConfig(driver_url, chosen, seconds, db, where)


_DEFINED = re.compile(r"^local (?:function )?([\w, ]+?)(?:\(| =)", re.MULTILINE)


@functools.cache
def load_script(name: str) -> str:
    """The source of ``lua/<name>.lua`` with the helpers of ``lua/lib.lua`` it uses before it.

    ``lib.lua`` is a series of blocks separated by blank lines; the first (the prefix and
    the wake-up list) is always taken, the others when a name they define is used. A script
    runs all of its top level on every call, so helpers it does not need only cost time.
    """
    folder = resources.files("underway.backends").joinpath("lua")
    blocks = folder.joinpath("lib.lua").read_text("utf-8").split("\n\n")
    body = folder.joinpath(f"{name}.lua").read_text("utf-8")
    names = [
        {n.strip() for m in _DEFINED.finditer(block) for n in m.group(1).split(",")}
        for block in blocks
    ]
    chosen, text = {0}, body
    while True:
        used = {
            i
            for i, defined in enumerate(names)
            if i not in chosen and any(re.search(rf"\b{n}\b", text) for n in defined)
        }
        if not used:
            break
        chosen |= used
        text += "".join(blocks[i] for i in used)
    return "\n\n".join(blocks[i] for i in sorted(chosen)) + "\n\n" + body


def to_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    return (moment - _EPOCH) // _US


@functools.lru_cache(maxsize=4096)
def from_us(value: bytes | str | int) -> datetime:
    """The aware UTC datetime of a microsecond timestamp.

    Cached: the jobs of a batch share their times (enqueued, started, lease expiry).
    """
    return _EPOCH + timedelta(microseconds=int(value))


def opt(value: str | bytes | None) -> str | bytes:
    """An optional string as the scripts take it: ``""`` for none, else ``"="`` + value."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return b"=" + value
    return "=" + value


def new_job_args(job: NewJob) -> list[str | bytes]:
    """The 8 script arguments describing a new job (``NEW_FIELDS`` in ``lib.lua``)."""
    return [
        job.id,
        job.task_name,
        job.queue,
        job.payload,
        str(job.priority),
        str(job.max_attempts),
        "" if job.scheduled_at is None else str(to_us(job.scheduled_at)),
        opt(job.unique_key),
    ]


def release_args(item: Release) -> list[str | bytes]:
    """The 7 script arguments of one release (see ``release.lua``)."""
    outcome = item.outcome
    extra: str | None = None
    if outcome.kind is OutcomeKind.RETRY:
        assert outcome.retry_at is not None  # guaranteed by Outcome.__post_init__
        extra = str(to_us(outcome.retry_at))
    elif outcome.kind is OutcomeKind.DEAD:
        extra = outcome.reason
    return [
        item.lease.job_id,
        str(item.lease.token),
        outcome.kind.value,
        opt(outcome.result),
        opt(outcome.error),
        opt(outcome.traceback),
        opt(extra),
    ]


#: The fields of a job record in the order ``record()`` in ``lib.lua`` sends them.
FIELDS = (
    b"id",
    b"task_name",
    b"queue",
    b"payload",
    b"status",
    b"priority",
    b"attempts",
    b"max_attempts",
    b"enqueued_at",
    b"scheduled_at",
    b"started_at",
    b"finished_at",
    b"lease_owner",
    b"lease_expires_at",
    b"lease_token",
    b"unique_key",
    b"result",
    b"error",
    b"traceback",
    b"progress",
    b"progress_message",
    b"cancel_requested",
    b"dead_reason",
)


def unpack_record(blob: bytes) -> dict[bytes, bytes]:
    """The fields of a record as ``record()`` in ``lib.lua`` sends it.

    ``record()`` sends the values' lengths (``-1`` for a missing field), a newline, then the
    values one after another: one bulk string, which redis-py's Python parser reads far
    faster than an array. (The acquire script, the hot path, sends arrays of fewer values
    instead: see :func:`decode_leased`.)

    Raises:
        CorruptRecordError: The reply is not in that form.
    """
    if not isinstance(blob, bytes):
        raise CorruptRecordError(f"a job record reply is {type(blob).__name__}, not bytes")
    head, _, body = blob.partition(b"\n")
    fields: dict[bytes, bytes] = {}
    start = 0
    try:
        for name, size in zip(FIELDS, map(int, head.split(b",")), strict=True):
            if size >= 0:
                fields[name] = body[start : start + size]
                start += size
    except ValueError as exc:
        raise CorruptRecordError(f"a job record reply is malformed: {exc}") from exc
    return fields


def _text(fields: Mapping[bytes, bytes], name: bytes) -> str | None:
    value = fields.get(name)
    return None if value is None else value.decode()


def _time(fields: Mapping[bytes, bytes], name: bytes) -> datetime | None:
    value = fields.get(name)
    return None if value is None else from_us(value)


_STATUSES = {status.value.encode(): status for status in JobStatus}


def decode_job(fields: Mapping[bytes, bytes], now: datetime) -> JobRecord:
    """The record of a job hash, its status as reported at ``now``.

    Raises:
        CorruptRecordError: A field is missing or malformed.
    """
    job_id = fields.get(b"id", b"?").decode(errors="replace")
    try:
        scheduled_at = from_us(fields[b"scheduled_at"])
        status = _STATUSES[fields[b"status"]]
        progress = fields.get(b"progress")
        return JobRecord(
            id=fields[b"id"].decode(),
            task_name=fields[b"task_name"].decode(),
            queue=fields[b"queue"].decode(),
            payload=fields[b"payload"],
            status=reported_status(status, scheduled_at, now),
            priority=int(fields[b"priority"]),
            attempts=int(fields[b"attempts"]),
            max_attempts=int(fields[b"max_attempts"]),
            enqueued_at=from_us(fields[b"enqueued_at"]),
            scheduled_at=scheduled_at,
            started_at=_time(fields, b"started_at"),
            finished_at=_time(fields, b"finished_at"),
            lease_owner=_text(fields, b"lease_owner"),
            lease_expires_at=_time(fields, b"lease_expires_at"),
            lease_token=int(fields[b"lease_token"]),
            unique_key=_text(fields, b"unique_key"),
            result=fields.get(b"result"),
            error=_text(fields, b"error"),
            traceback=_text(fields, b"traceback"),
            progress=None if progress is None else float(progress),
            progress_message=_text(fields, b"progress_message"),
            cancel_requested=b"cancel_requested" in fields,
            dead_reason=_text(fields, b"dead_reason"),
        )
    except KeyError as exc:
        key = exc.args[0]
        if key == fields.get(b"status"):
            raise CorruptRecordError(f"job {job_id!r}: unknown status {key!r}") from exc
        field = key.decode() if isinstance(key, bytes) else key
        raise CorruptRecordError(f"job {job_id!r}: the field {field!r} is missing") from exc
    except (ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise CorruptRecordError(f"job {job_id!r}: {exc}") from exc


#: The values of a job the acquire script has just leased, in the order it sends them.
LEASED = (
    "id",
    "task_name",
    "queue",
    "payload",
    "priority",
    "attempts",
    "max_attempts",
    "enqueued_at",
    "scheduled_at",
    "lease_token",
    "unique_key",
    "error",
    "traceback",
)


def decode_leased(
    values: list[Any],
    started_at: datetime,
    expires_at: datetime,
    worker: str,
    names: dict[bytes, str],
) -> JobRecord:
    """The record of a job the acquire script has just leased (the values of :data:`LEASED`).

    The worker's hot path. The script sends only what the caller does not know: the
    status is ``running``, the lease and start are the call's own, and progress,
    cancellation, result and finish are cleared on a job that waits. It has checked that
    the fields it needs are present and numeric; a value still missing (``None``) or
    malformed fails here. ``names`` caches the decoded task and queue names, which repeat.

    Raises:
        CorruptRecordError: The reply is not in that form.
    """
    if len(values) != len(LEASED):
        raise CorruptRecordError(f"a leased job reply has {len(values)} values, not {len(LEASED)}")
    (job_id, task_name, queue, payload, priority, attempts, max_attempts, enqueued_at,
     scheduled_at, token, unique_key, error, trace) = values  # fmt: skip
    try:
        task = names.get(task_name) or names.setdefault(task_name, task_name.decode())
        where = names.get(queue) or names.setdefault(queue, queue.decode())
        if payload is None:
            raise ValueError("the payload is missing")
        return JobRecord(
            job_id.decode(),
            task,
            where,
            payload,
            JobStatus.RUNNING,
            int(priority),
            int(attempts),
            int(max_attempts),
            from_us(enqueued_at),
            from_us(scheduled_at),
            started_at,
            None,
            worker,
            expires_at,
            int(token),
            None if unique_key is None else unique_key.decode(),
            None,
            None if error is None else error.decode(),
            None if trace is None else trace.decode(),
        )
    except (AttributeError, TypeError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        job = job_id.decode(errors="replace") if isinstance(job_id, bytes) else "?"
        raise CorruptRecordError(f"job {job!r}: a leased job reply is malformed ({exc})") from exc


def encode_worker(info: WorkerInfo) -> bytes:
    """A registry entry (the heartbeat is kept apart, in a sorted set)."""
    return orjson.dumps(
        {
            "hostname": info.hostname,
            "pid": info.pid,
            "queues": list(info.queues),
            "concurrency": info.concurrency,
            "started_at": to_us(info.started_at),
            "metadata": dict(info.metadata),
        }
    )


def decode_worker(worker_id: bytes, data: bytes, heartbeat: float | None) -> WorkerInfo:
    """A registry entry as :class:`WorkerInfo`.

    Raises:
        CorruptRecordError: The entry is not what :func:`encode_worker` wrote.
    """
    try:
        entry = orjson.loads(data)
        return WorkerInfo(
            id=worker_id.decode(),
            hostname=entry["hostname"],
            pid=int(entry["pid"]),
            queues=tuple(entry["queues"]),
            concurrency=int(entry["concurrency"]),
            started_at=from_us(entry["started_at"]),
            heartbeat_at=None if heartbeat is None else from_us(int(heartbeat)),
            metadata=dict(entry["metadata"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CorruptRecordError(f"worker {worker_id!r}: {exc}") from exc
