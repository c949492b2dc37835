"""Fixtures for the backend tests: a hand-moved clock and one backend per URL scheme."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.backends.postgres_support import postgres_url
from tests.backends.redis_support import redis_url
from underway.backends import backend_from_url
from underway.backends.base import Backend

START = datetime(2026, 3, 8, 9, 0, tzinfo=timezone.utc)

#: The backends every contract test runs against. Later backends add their URL here.
BACKENDS = ["memory", "sqlite", "postgresql", "redis"]


class FakeClock:
    """A clock the test moves by hand; backends call it for "now"."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind: str = request.param
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}?poll_interval=0.02"
    if kind == "postgresql":
        return postgres_url(request, poll_interval="0.02")
    if kind == "redis":
        return redis_url(request)
    raise AssertionError(f"no URL for backend {kind!r}")


@pytest.fixture
async def backend(backend_url: str, clock: FakeClock) -> AsyncIterator[Backend]:
    store = backend_from_url(backend_url, clock=clock)
    async with store:
        yield store
