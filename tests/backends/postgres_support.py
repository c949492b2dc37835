"""PostgreSQL for the tests: the shared server, a private schema per test, and cleanup.

The shared server is ``UNDERWAY_TEST_POSTGRES`` (default the local one, user postgres,
database test). Each test gets a schema of its own, dropped when the test ends, so runs
never see each other's jobs and leave nothing behind.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.services import require_binary, require_service

__all__ = [
    "TEST_DSN",
    "PrivateCluster",
    "drop_schemas",
    "listener_pid",
    "postgres_url",
    "require_postgres",
    "unique_schema",
    "wait_for_listener",
]

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


def drop_schemas(names: list[str], dsn: str = TEST_DSN) -> None:
    """Drop the schemas (with their tables), from a thread with an event loop of its own."""

    async def drop() -> None:
        conn = await asyncpg.connect(dsn)
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


async def listener_pid(conn: asyncpg.Connection[Any], channel: str) -> int | None:
    """The server process id of the session listening on ``channel``, if one is."""
    pid: int | None = await conn.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE query = $1", f'LISTEN "{channel}"'
    )
    return pid


async def wait_for_listener(
    conn: asyncpg.Connection[Any], channel: str, not_pid: int | None = None
) -> int:
    """Wait until a session (other than ``not_pid``) listens on ``channel``; return its pid."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = await listener_pid(conn, channel)
        if pid is not None and pid != not_pid:
            return pid
        await asyncio.sleep(0.02)
    raise AssertionError(f"nobody listens on {channel!r} (again)")


def _bindir() -> Path:
    """The directory of initdb and pg_ctl (Debian keeps them off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    return Path(require_binary("pg_ctl", "install PostgreSQL's server package")).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateCluster:
    """A PostgreSQL server of the tests' own, in a temporary directory, on a free port.

    For fault tests that stop and restart the server; the shared one is never touched.
    As root the server runs as the ``postgres`` user (PostgreSQL refuses to run as root).
    """

    def __init__(self) -> None:
        bindir = _bindir()
        self.initdb, self.pg_ctl = str(bindir / "initdb"), str(bindir / "pg_ctl")
        self.dir = Path(tempfile.mkdtemp(prefix="underway-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run(
            self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync", "--no-instructions", "--no-locale",
        )  # fmt: skip

    @property
    def dsn(self) -> str:
        """Where to connect (database ``postgres``)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            [*self._as, *command], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{command[:2]} failed: {done.stdout}{done.stderr}\n{log}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        # fsync=off for speed: a fast shutdown (stop, restart) still writes every commit.
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "30", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions, end sessions, flush)."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session ends; the server is back when it returns."""
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w",
                  "-t", "30", "restart")  # fmt: skip

    def destroy(self) -> None:
        """Stop the server if it runs and delete its directory."""
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
