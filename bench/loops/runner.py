"""One timed run of one periodic-loop implementation, in a process of its own.

``timing.py`` starts this script once per (system, scenario, repetition), so that no two
systems ever share an event loop, an import cache or a garbage collector. The run's raw
timestamps are written to stdout as one JSON object.

The body of the loop does nothing but read ``time.perf_counter()`` and, in the "variable"
scenario, await ``asyncio.sleep`` for a pre-drawn 0-8 ms; it never prints.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.metadata
import json
import os
import random
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import datetime, timezone
from typing import Any

Body = Callable[[], Coroutine[Any, Any, None]]

SYSTEMS = ("underway", "discord", "asyncio")
SCENARIOS = ("fixed", "variable")
#: The variable body sleeps a duration drawn uniformly from [0, MAX_BODY] seconds.
MAX_BODY = 0.008


def body_durations(scenario: str, iterations: int, seed: int) -> list[float]:
    """Return how long the body sleeps at each iteration (all zero for "fixed")."""
    if scenario == "fixed":
        return [0.0] * iterations
    rng = random.Random(seed)
    return [rng.uniform(0.0, MAX_BODY) for _ in range(iterations)]


class Recorder:
    """The loop body and what it records: when each iteration started, on ``perf_counter``.

    At the first iteration it also notes how long after the loop's own first scheduled
    instant it started (``anchor_offset``), read from ``scheduled``: that instant, not the
    first start, is where the ideal schedule ``anchor + k * interval`` begins.
    """

    def __init__(self, durations: list[float]) -> None:
        self.stamps: list[float] = []
        self.durations = durations
        self.scheduled: Callable[[], datetime | None] = lambda: None
        self.anchor_offset: float | None = None

    async def body(self) -> None:
        """Record the start instant, then sleep the drawn duration."""
        self.stamps.append(time.perf_counter())
        if self.anchor_offset is None:
            target = self.scheduled()
            if target is not None:
                self.anchor_offset = (datetime.now(timezone.utc) - target).total_seconds()
        duration = self.durations[len(self.stamps) - 1]
        if duration > 0.0:
            await asyncio.sleep(duration)


class PlainLoop:
    """The baseline: a hand-written loop that sleeps until ``start + k * interval``.

    Whatever lateness this shows comes from the event loop itself (on Linux, asyncio waits
    in ``epoll_wait``, whose timeout is rounded up to whole milliseconds), not from a library.
    """

    def __init__(self, body: Body, interval: float, iterations: int) -> None:
        self.body = body
        self.interval = interval
        self.iterations = iterations
        self.anchor: float | None = None

    async def run(self) -> None:
        """Run the body ``iterations`` times, at ``start + k * interval``."""
        # perf_counter is the recorder's clock; asyncio's (monotonic) runs at the same rate.
        start = self.anchor = time.perf_counter()
        for k in range(self.iterations):
            delay = start + k * self.interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.body()

    def start(self) -> asyncio.Task[None]:
        """Start the loop in a task."""
        return asyncio.get_running_loop().create_task(self.run())


def make_loop(system: str, recorder: Recorder, interval: float, iterations: int) -> Any:
    """Wrap the recorder's body in ``system``'s loop (not started yet)."""
    if system == "asyncio":
        return PlainLoop(recorder.body, interval, iterations)
    if system == "underway":
        import underway

        periodic: Any = underway.loop(seconds=interval, count=iterations)(recorder.body)
    else:
        # Imported by name: discord.py is installed only in the bench venv, and the main
        # venv's mypy must not need it.
        tasks: Any = importlib.import_module("discord.ext.tasks")
        periodic = tasks.loop(seconds=interval, count=iterations)(recorder.body)

    # Both libraries keep the instant the running iteration was scheduled for (an aware
    # UTC datetime) in the private attribute _last_iteration; there is no public one.
    def scheduled() -> datetime | None:
        target: datetime | None = periodic._last_iteration
        return target

    recorder.scheduled = scheduled
    return periodic


async def measure(
    system: str, scenario: str, iterations: int, interval: float, seed: int
) -> dict[str, Any]:
    """Run one loop to completion and return its raw timestamps."""
    recorder = Recorder(body_durations(scenario, iterations, seed))
    # Built before the clock starts: the decorator's set-up (underway resolves the local
    # zone) is not part of how soon start() runs the first iteration.
    periodic = make_loop(system, recorder, interval, iterations)
    # Let the event loop settle and leave no garbage from imports to the timed part.
    await asyncio.sleep(0.05)
    gc.collect()
    start_call = time.perf_counter()
    task = periodic.start()
    if not isinstance(task, asyncio.Task):
        raise RuntimeError(f"{system} loop did not start a task (got {task!r}).")
    await task
    end = time.perf_counter()
    # The ideal schedule starts at the loop's own first scheduled instant, on perf_counter.
    if isinstance(periodic, PlainLoop):
        anchor = periodic.anchor
    elif recorder.anchor_offset is not None and recorder.stamps:
        anchor = recorder.stamps[0] - recorder.anchor_offset
    else:
        raise RuntimeError(f"{system} loop did not expose its first scheduled instant.")
    return {
        "system": system,
        "scenario": scenario,
        "iterations": iterations,
        "interval_s": interval,
        "seed": seed,
        "start_call": start_call,
        "end": end,
        "anchor": anchor,
        "stamps": recorder.stamps,
        "body_sleep_s": recorder.durations,
        "event_loop": type(asyncio.get_running_loop()).__name__,
    }


def version_of(system: str) -> str:
    """Return the installed version of the system under test."""
    if system == "asyncio":
        return sys.version.split()[0]
    return importlib.metadata.version("underway" if system == "underway" else "discord.py")


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run once, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--system", choices=SYSTEMS, required=True)
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=0.010)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.system == "discord":
        # Import before timing so that its cost is not charged to the first iteration.
        importlib.import_module("discord.ext.tasks")
    elif args.system == "underway":
        importlib.import_module("underway")
    load_before = os.getloadavg()[0]
    result = asyncio.run(
        measure(args.system, args.scenario, args.iterations, args.interval, args.seed)
    )
    result["version"] = version_of(args.system)
    result["module_file"] = sys.modules[
        {"underway": "underway", "discord": "discord", "asyncio": "asyncio"}[args.system]
    ].__file__
    result["python"] = sys.version.split()[0]
    result["loadavg_1min_before"] = load_before
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
