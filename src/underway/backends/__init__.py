"""Job stores, chosen by URL scheme.

``backend_from_url("sqlite:///jobs.db")`` builds the backend a URL names; the concrete
module is imported only then, so a driver that is not installed matters only to those who
use it. This is the one module that names the concrete backends.

URLs:

* ``memory://``: in this process only (tests, experiments).
* ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite:///:memory:``:
  the embedded default. Query options: ``busy_timeout`` (seconds, default 5) and
  ``poll_interval`` (seconds, default 0.2; how often idle workers look for jobs enqueued by
  other processes).
* ``postgresql://user:password@host:5432/dbname`` (or ``postgres://``): workers on many
  machines; needs ``pip install 'underway[postgres]'``. Query options: ``schema`` (default
  ``underway``), ``pool_size`` (default 10), ``poll_interval`` (seconds, default 0.5) and
  ``connect_timeout`` (seconds, default 5); other parameters go to asyncpg.
* ``redis://[user:password@]host[:port][/db]`` (or ``rediss://`` for TLS): workers on many
  machines; needs ``pip install 'underway[redis]'``. Query options: ``prefix`` (of every
  key, default ``underway``), ``retry_for`` (seconds of retrying while the server is
  unreachable, default 5), and redis-py's ``socket_timeout``, ``ssl_*`` and a few more.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from underway.backends.base import Backend, Clock, utc_now
from underway.errors import BackendUnavailableError

__all__ = ["SUPPORTED_SCHEMES", "Backend", "backend_from_url", "open_backend"]


@dataclass(frozen=True, slots=True)
class _Entry:
    module: str
    factory: str
    extra: str | None  # the pip extra that installs the driver, if one is needed


_BACKENDS: dict[str, _Entry] = {
    "memory": _Entry("underway.backends.memory", "MemoryBackend", None),
    "sqlite": _Entry("underway.backends.sqlite", "SQLiteBackend", None),
    "postgresql": _Entry("underway.backends.postgres", "PostgresBackend", "postgres"),
    "postgres": _Entry("underway.backends.postgres", "PostgresBackend", "postgres"),
    "redis": _Entry("underway.backends.redis", "RedisBackend", "redis"),
    "rediss": _Entry("underway.backends.redis", "RedisBackend", "redis"),
}

#: The URL schemes :func:`backend_from_url` understands.
SUPPORTED_SCHEMES = tuple(_BACKENDS)


def backend_from_url(url: str, *, clock: Clock = utc_now) -> Backend:
    """Build (without opening) the backend a URL names.

    Args:
        url: For example ``"sqlite:///underway.db"`` or ``"memory://"``.
        clock: The backend's clock (an aware UTC ``datetime``); for tests.

    Raises:
        ValueError: The scheme is unknown or the URL malformed; the message lists the
            supported schemes.
        BackendUnavailableError: The backend's driver is not installed; the message names
            the pip extra that installs it.
    """
    if not isinstance(url, str):
        raise TypeError(
            f"a backend URL must be a str such as 'sqlite:///underway.db', not {url!r}."
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    entry = _BACKENDS.get(scheme)
    if entry is None:
        supported = ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
        raise ValueError(
            f"unknown backend URL scheme in {url!r}; supported: {supported} "
            "(for example 'sqlite:///underway.db')."
        )
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        if exc.name is not None and exc.name.startswith("underway"):
            raise
        hint = f"pip install 'underway[{entry.extra}]'" if entry.extra else "reinstall underway"
        raise BackendUnavailableError(
            f"the {scheme}:// backend needs {exc.name!r}, which is not installed; {hint}."
        ) from exc
    factory = getattr(module, entry.factory)
    options: dict[str, Any] = dict(parse_qsl(parts.query, strict_parsing=False))
    backend: Backend = factory.from_url(url, clock=clock, **options)
    return backend


async def open_backend(url: str, *, clock: Clock = utc_now) -> Backend:
    """Build the backend a URL names and open it; see :func:`backend_from_url`."""
    backend = backend_from_url(url, clock=clock)
    await backend.open()
    return backend
