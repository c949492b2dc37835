"""Redis for the tests: the shared server with a key prefix per test, and private servers.

The shared server is ``UNDERWAY_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``). Each
test gets a key prefix of its own, whose keys are deleted when the test ends, so runs never
see each other's jobs and leave nothing behind.

Tests that stop or kill the server start a :class:`PrivateRedis` of their own on a free
port in a temporary directory, never touching the shared one.
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from tests.services import require_binary, require_service

__all__ = [
    "TEST_URL",
    "PrivateRedis",
    "delete_prefix",
    "redis_url",
    "require_redis",
    "unique_prefix",
]

TEST_URL = os.environ.get("UNDERWAY_TEST_REDIS", "redis://127.0.0.1:6379/0")
_START_HINT = (
    "start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' "
    "--appendonly no, or point UNDERWAY_TEST_REDIS at a server"
)


def require_redis() -> str:
    """Return the shared server's URL; skip the test (fail it in CI) if it is not running."""
    parts = urlsplit(TEST_URL)
    require_service("Redis", parts.hostname or "127.0.0.1", parts.port or 6379, _START_HINT)
    return TEST_URL


def unique_prefix() -> str:
    """A key prefix no other test or run uses."""
    return f"uwt-{os.getpid()}-{secrets.token_hex(4)}"


def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` on the server at ``url``; return how many."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start : start + 1000])
        return len(keys)
    finally:
        client.close()


def redis_url(request: pytest.FixtureRequest, **options: str) -> str:
    """A URL on the shared server with a key prefix private to the requesting test."""
    url = require_redis()
    prefix = unique_prefix()
    request.addfinalizer(lambda: delete_prefix(url, prefix))
    query = "&".join(f"{k}={v}" for k, v in {"prefix": prefix, **options}.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateRedis:
    """A redis-server of the test's own, on a free port, persisting to ``directory``.

    Append-only with ``appendfsync always``: every acknowledged write survives a restart.
    """

    def __init__(self, directory: Path, *extra: str, tls: bool = False) -> None:
        self.binary = require_binary("redis-server", "install it with: apt-get install redis")
        self.directory = directory
        self.port = free_port()
        self.extra = extra
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        if tls:
            self._make_certificate()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def certificate(self) -> Path:
        """The server's self-signed certificate (its own CA), with ``tls=True``."""
        return self.directory / "cert.pem"

    def _make_certificate(self) -> None:
        openssl = require_binary("openssl", "install it with: apt-get install openssl")
        self.directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(self.directory / "key.pem"),
                "-out",
                str(self.certificate),
            ],
            check=True,
            capture_output=True,
        )

    def _listen_args(self) -> list[str]:
        if not self.tls:
            return ["--port", str(self.port)]
        return [
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(self.certificate),
            "--tls-key-file",
            str(self.directory / "key.pem"),
            "--tls-ca-cert-file",
            str(self.certificate),
            "--tls-auth-clients",
            "no",
        ]

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (again, on the same port and files) and wait until it answers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    *self._listen_args(),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.directory),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                    *self.extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"redis-server exited with {self.process.returncode}; see "
                    f"{self.directory / 'redis.log'}"
                )
            if self.ping():
                return
            time.sleep(0.02)
        raise AssertionError(f"redis-server on port {self.port} did not answer in {timeout} s")

    def ping(self) -> bool:
        """Whether the server answers PING (loaded and ready; NOAUTH counts as an answer)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as plain:
                if self.tls:
                    context = ssl.create_default_context(cafile=self.certificate)
                    with context.wrap_socket(plain, server_hostname="127.0.0.1") as sock:
                        sock.sendall(b"PING\r\n")
                        reply = sock.recv(64)
                else:
                    plain.sendall(b"PING\r\n")
                    reply = plain.recv(64)
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down cleanly (SIGTERM: it syncs the append-only file first)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port and files."""
        self.stop()
        self.start()
