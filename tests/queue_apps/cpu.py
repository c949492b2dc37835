"""Plain functions for ``process=True`` tasks: a pool process imports them by name."""

from __future__ import annotations

import os
import time


def sum_of_squares(n: int) -> dict[str, int]:
    """CPU-bound work; returns the answer and the id of the process that computed it."""
    return {"answer": sum(i * i for i in range(n)), "pid": os.getpid()}


def fail_in_process(message: str) -> None:
    """Raise inside the pool process."""
    raise ValueError(message)


def sleep_and_report(seconds: float) -> int:
    """Occupy a pool process for a while."""
    time.sleep(seconds)
    return os.getpid()
