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


def make_body(stamps: list[float], durations: list[float]) -> Body:
    """Build the loop body: record the start instant, then sleep the drawn duration."""
    perf_counter = time.perf_counter

    async def body() -> None:
        stamps.append(perf_counter())
        duration = durations[len(stamps) - 1]
        if duration > 0.0:
            await asyncio.sleep(duration)

    return body


class PlainLoop:
    """The baseline: a hand-written loop that sleeps until absolute targets on the loop clock.

    Whatever lateness this shows comes from the event loop itself (on Linux, asyncio waits
    in ``epoll_wait``, whose timeout is rounded up to whole milliseconds), not from a library.
    """

    def __init__(self, body: Body, interval: float, iterations: int) -> None:
        self.body = body
        self.interval = interval
        self.iterations = iterations

    async def run(self) -> None:
        """Run the body ``iterations`` times, at ``start + k * interval``."""
        clock = asyncio.get_running_loop().time
        start = clock()
        for k in range(self.iterations):
            delay = start + k * self.interval - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.body()

    def start(self) -> asyncio.Task[None]:
        """Start the loop in a task."""
        return asyncio.get_running_loop().create_task(self.run())


def make_loop(system: str, body: Body, interval: float, iterations: int) -> Any:
    """Wrap ``body`` in ``system``'s loop decorator (not started yet)."""
    if system == "asyncio":
        return PlainLoop(body, interval, iterations)
    if system == "underway":
        import underway

        return underway.loop(seconds=interval, count=iterations)(body)
    # Imported by name: discord.py is installed only in the bench venv, and the main venv's
    # mypy must not need it.
    tasks: Any = importlib.import_module("discord.ext.tasks")
    return tasks.loop(seconds=interval, count=iterations)(body)


async def measure(
    system: str, scenario: str, iterations: int, interval: float, seed: int
) -> dict[str, Any]:
    """Run one loop to completion and return its raw timestamps."""
    stamps: list[float] = []
    durations = body_durations(scenario, iterations, seed)
    body = make_body(stamps, durations)
    # Built before the clock starts: the decorator's set-up (underway resolves the local
    # zone) is not part of how soon start() runs the first iteration.
    periodic = make_loop(system, body, interval, iterations)
    # Let the event loop settle and leave no garbage from imports to the timed part.
    await asyncio.sleep(0.05)
    gc.collect()
    start_call = time.perf_counter()
    task = periodic.start()
    if not isinstance(task, asyncio.Task):
        raise RuntimeError(f"{system} loop did not start a task (got {task!r}).")
    await task
    end = time.perf_counter()
    return {
        "system": system,
        "scenario": scenario,
        "iterations": iterations,
        "interval_s": interval,
        "seed": seed,
        "start_call": start_call,
        "end": end,
        "stamps": stamps,
        "body_sleep_s": durations,
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
