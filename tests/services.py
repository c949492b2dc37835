"""Servers that some tests need (Redis, PostgreSQL): required in CI, optional elsewhere.

The rule: with ``CI=true`` in the environment a test that needs a server runs and FAILS
when the server is missing, so that CI never passes by skipping; on a developer's machine
without the server, the test SKIPS and says how to start it.
"""

from __future__ import annotations

import os
import shutil
import socket
from typing import NoReturn

import pytest

__all__ = ["in_ci", "require_binary", "require_service", "service_reachable"]


def in_ci() -> bool:
    """Whether the tests run in CI (``CI`` is set to a true value), where servers are required."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def service_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _missing(message: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"{message} (CI=true: this server is required, not optional)", pytrace=False)
    pytest.skip(message)


def require_service(name: str, host: str, port: int, hint: str = "") -> None:
    """Skip the calling test (fail it in CI) unless ``name`` listens on ``host:port``.

    Call it from a fixture or at the top of a test.

    Args:
        name: The server, for the message (``"Redis"``, ``"PostgreSQL"``).
        host: Its address.
        port: Its TCP port.
        hint: How to start it, appended to the message.
    """
    if service_reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    _missing(f"{message}; {hint}" if hint else message)


def require_binary(name: str, hint: str = "") -> str:
    """Return the path of the program ``name``; skip the test (fail it in CI) if absent.

    For tests that start a private server (``redis-server``, ``pg_ctl``) on a free port.
    """
    path = shutil.which(name)
    if path is None:
        message = f"the program {name!r} is not installed"
        _missing(f"{message}; {hint}" if hint else message)
    return path
