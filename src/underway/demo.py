"""The demo that ``make demo`` (``underway demo``) runs: periodic loops in one process."""

from __future__ import annotations

import asyncio
import datetime as dt

import underway

__all__ = ["main"]


def _local(when: dt.datetime | None) -> str:
    return "-" if when is None else f"{when.astimezone():%H:%M:%S}"


def main() -> None:
    """Start three loops and run them until they have all finished (about 6 seconds)."""
    ready = asyncio.Event()
    started = dt.datetime.now()

    def stamp() -> str:
        return f"[{(dt.datetime.now() - started).total_seconds():5.2f}s]"

    @underway.loop(seconds=1.0, count=5)
    async def heartbeat() -> None:
        print(f"{stamp()} heartbeat {heartbeat.current_loop + 1}/5")

    @heartbeat.before_loop
    async def wait_until_ready() -> None:
        await ready.wait()

    @heartbeat.after_loop
    async def done() -> None:
        print(f"{stamp()} heartbeat finished")

    @underway.loop(cron="*/2 * * * * *", count=3)
    async def every_other_second() -> None:
        print(f"{stamp()} cron */2 seconds: next at {_local(every_other_second.next_iteration)}")

    @underway.loop(seconds=0.5, count=1)
    async def get_ready() -> None:
        await asyncio.sleep(0.5)  # pretend to connect to something
        print(f"{stamp()} ready: heartbeat may start")
        ready.set()

    heartbeat.start()
    every_other_second.start()
    get_ready.start()
    print("underway demo: three loops started; they end by themselves (Ctrl-C stops them).")
    underway.run()
    print("underway demo: all loops have ended.")
