"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from underway.loop import registry


@pytest.fixture(autouse=True)
def _clean_loop_registry() -> Iterator[None]:
    """Keep loops deferred by one test from leaking into the next."""
    registry.deferred.clear()
    yield
    registry.deferred.clear()
