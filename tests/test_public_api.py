"""The public names are fixed: programs outside the repository import them."""

from __future__ import annotations

import inspect

import underway
import underway.tasks


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name in dir(underway)
        if not name.startswith("_")
        and name != "annotations"  # from __future__
        and not inspect.ismodule(getattr(underway, name))
    }
    assert set(underway.__all__) == public


def test_fixed_loop_names() -> None:
    assert {"loop", "Loop", "run"} <= set(underway.__all__)
    assert underway.tasks.loop is underway.loop
    assert underway.tasks.Loop is underway.Loop


def test_errors_share_one_base() -> None:
    assert issubclass(underway.LoopError, underway.UnderwayError)
    assert issubclass(underway.LoopError, RuntimeError)
