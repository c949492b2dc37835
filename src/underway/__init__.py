"""underway: background work for Python.

Periodic loops (:func:`loop`), run standalone with :func:`run`.
"""

from __future__ import annotations

from underway.clock import Clock, SystemClock, VirtualClock
from underway.errors import LoopError, UnderwayError
from underway.loop import Loop, loop
from underway.runner import run

__all__ = [
    "Clock",
    "Loop",
    "LoopError",
    "SystemClock",
    "UnderwayError",
    "VirtualClock",
    "loop",
    "run",
]
