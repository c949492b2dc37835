"""How fast can one job be enqueued at a time? Round trips to Redis, bare and with work.

A single-job enqueue that waits for its reply cannot beat one round trip to the server.
This measures, on a private redis-server and interleaved round-robin, the bare round trip
of each kind of client next to the enqueues that pay it:

* ``sync-ping``: redis-py's blocking client, ``PING`` one at a time (Huey's kind of client,
  in the peers' venv: redis-py's own parser, as Huey's documented install has it);
* ``sync-lpush``: the same client pushing a 200-byte message: a Huey enqueue without
  Huey's own Python;
* ``huey``: Huey's enqueue, ``noop()``;
* ``asyncio-ping``: a bare asyncio protocol writing ``PING`` and awaiting the reply, no
  library at all: the floor of any client that awaits its reply on an asyncio loop;
* ``underway-ping``: ``PING`` through underway's lean connection;
* ``underway``: ``await noop.enqueue()``.

Each figure is N calls, each awaited (or returned) before the next, after a warm-up call,
timed in the calling process; medians of the rounds. Run by ``bench/run_all.sh`` after
the field; alone::

    .venv-bench/bin/python bench/queue/floor.py --markdown bench/results/floor.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from servers import PrivateRedis  # noqa: E402

#: kind -> (venv interpreter relative to the repository, description)
KINDS: dict[str, tuple[str, str]] = {
    "sync-ping": (".venv-bench/bin/python", "redis-py, blocking: PING"),
    "sync-lpush": (".venv-bench/bin/python", "redis-py, blocking: LPUSH of 200 bytes"),
    "huey": (".venv-bench/bin/python", "Huey 3.5: noop() (enqueue)"),
    "asyncio-ping": (".venv-bench/underway/bin/python", "bare asyncio protocol: PING"),
    "underway-ping": (".venv-bench/underway/bin/python", "underway's lean connection: PING"),
    "underway": (".venv-bench/underway/bin/python", "underway: await noop.enqueue()"),
}


def measure(kind: str, url: str, n: int) -> float:
    """Seconds for ``n`` calls of ``kind``, one after another (run in the kind's venv)."""
    if kind in ("sync-ping", "sync-lpush"):
        import redis

        client = redis.Redis.from_url(url)
        message = b"x" * 200
        call = client.ping if kind == "sync-ping" else lambda: client.lpush("floor", message)
        call()
        began = time.perf_counter()
        for _ in range(n):
            call()
        return time.perf_counter() - began
    if kind == "huey":
        from huey import RedisHuey

        huey = RedisHuey("floor", url=url)

        @huey.task()
        def noop() -> None:
            return None

        noop()
        began = time.perf_counter()
        for _ in range(n):
            noop()
        return time.perf_counter() - began
    return asyncio.run(_measure_async(kind, url, n))


async def _measure_async(kind: str, url: str, n: int) -> float:
    if kind == "asyncio-ping":
        loop = asyncio.get_running_loop()

        class Ping(asyncio.Protocol):
            reply: asyncio.Future[bytes]

            def data_received(self, data: bytes) -> None:
                self.reply.set_result(data)

        host, port = url.removeprefix("redis://").split("/")[0].split(":")
        transport, ping = await loop.create_connection(Ping, host, int(port))
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        command = b"*1\r\n$4\r\nPING\r\n"
        for index in range(n + 1):
            if index == 1:
                began = time.perf_counter()  # after one warm-up call
            ping.reply = loop.create_future()
            transport.write(command)
            await ping.reply
        elapsed = time.perf_counter() - began
        transport.close()
        return elapsed
    from underway import Underway

    uw = Underway(f"{url}?prefix=floor")

    @uw.task(name="floor.noop")
    async def noop() -> None:
        return None

    async with uw:
        backend: Any = await uw.backend()
        if kind == "underway-ping":
            wire = backend._wire
            await wire.call("PING")
            began = time.perf_counter()
            for _ in range(n):
                await wire.call("PING")
            return time.perf_counter() - began
        await noop.enqueue()
        began = time.perf_counter()
        for _ in range(n):
            await noop.enqueue()
        return time.perf_counter() - began


def run_all(n: int, rounds: int, kinds: list[str]) -> dict[str, Any]:
    server = PrivateRedis()
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    try:
        for index in range(rounds):
            order = kinds[index % len(kinds) :] + kinds[: index % len(kinds)]
            for kind in order:
                server.reset()
                python = str(ROOT / KINDS[kind][0])
                done = subprocess.run(
                    [python, __file__, "--role", kind, "--url", server.url, "--n", str(n)],
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=True,
                )
                seconds = float(done.stdout.strip().splitlines()[-1])
                rates[kind].append(n / seconds)
                print(f"round {index + 1}: {kind}: {n / seconds:,.0f}/s", file=sys.stderr)
    finally:
        server.close()
    return {
        "n": n,
        "rounds": rounds,
        "redis": server.version,
        "rates": rates,
        "medians": {kind: statistics.median(values) for kind, values in rates.items()},
    }


def markdown(result: dict[str, Any]) -> str:
    medians = result["medians"]
    huey = medians.get("huey")
    lines = [
        "## One job at a time: the round trip underneath",
        "",
        f"redis-server {result['redis']} on loopback, {result['n']:,} calls per run, each "
        f"awaited before the next; medians of {result['rounds']} interleaved rounds "
        "(`bench/queue/floor.py`).",
        "",
        "| client | calls/s (min–max) | µs per call | ÷ Huey's enqueue |",
        "|---|---|---|---|",
    ]
    for kind, rate in medians.items():
        values = result["rates"][kind]
        ratio = f"{rate / huey:.2f}×" if huey else "n/a"
        lines.append(
            f"| {KINDS[kind][1]} | {rate:,.0f} ({min(values):,.0f}–{max(values):,.0f}) | "
            f"{1e6 / rate:.0f} | {ratio} |"
        )
    pings = {k: medians[k] for k in ("asyncio-ping", "underway-ping") if k in medians}
    if huey and pings:
        fastest = max(pings, key=pings.__getitem__)
        floor = pings[fastest]
        lines += [
            "",
            f"Twice Huey's enqueue rate would be {2 * huey:,.0f}/s. The fastest asyncio "
            f"client here, doing nothing but PING ({KINDS[fastest][1].split(':')[0]}), "
            f"reached {floor:,.0f}/s ({floor / huey:.2f}× Huey's enqueue)"
            + (
                ": no client that awaits each reply on an asyncio loop could enqueue one job "
                "at a time at twice Huey's rate on this machine."
                if floor < 2 * huey
                else ": the round trip alone leaves room for twice Huey's rate; an enqueue "
                "spends the rest on its script and its Python."
            ),
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        print(measure(args.role, args.url, args.n))
        return
    result = run_all(args.n, args.rounds, args.kinds.split(","))
    text = markdown(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
