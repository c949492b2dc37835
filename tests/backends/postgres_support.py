"""PostgreSQL for the tests: the shared server, a private schema per test, and cleanup.

The shared server is ``UNDERWAY_TEST_POSTGRES`` (default the local one, user postgres,
database test). Each test gets a schema of its own, dropped when the test ends, so runs
never see each other's jobs and leave nothing behind.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.services import require_service

__all__ = ["TEST_DSN", "drop_schemas", "postgres_url", "require_postgres", "unique_schema"]

TEST_DSN = os.environ.get("UNDERWAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def require_postgres() -> str:
    """Return the shared server's DSN; skip the test (fail it in CI) if it is not running."""
    parts = urlsplit(TEST_DSN)
    require_service(
        "PostgreSQL",
        parts.hostname or "127.0.0.1",
        parts.port or 5432,
        "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main "
        "start, or point UNDERWAY_TEST_POSTGRES at a server",
    )
    return TEST_DSN


def unique_schema() -> str:
    """A schema name no other test or run uses."""
    return f"uwt_{os.getpid()}_{secrets.token_hex(4)}"


def drop_schemas(names: list[str]) -> None:
    """Drop the schemas (with their tables), from a thread with an event loop of its own."""

    async def drop() -> None:
        conn = await asyncpg.connect(TEST_DSN)
        try:
            for name in names:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()

    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(drop())
        except BaseException as exc:  # reported by the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if errors:
        raise errors[0]


def postgres_url(request: pytest.FixtureRequest, **options: str) -> str:
    """A URL on the shared server with a schema private to the requesting test."""
    dsn = require_postgres()
    name = unique_schema()
    request.addfinalizer(lambda: drop_schemas([name]))
    query = "&".join(f"{k}={v}" for k, v in {"schema": name, **options}.items())
    return f"{dsn}?{query}"
