"""A bounded HTTP/1.1 load generator, for machines without wrk.

It keeps ``--connections`` keep-alive connections busy with ``GET --path`` for
``--duration`` seconds against a server on loopback, then prints one JSON line:
``{"requests": ..., "seconds": ..., "errors": ...}``. Run it in a process of its own, so
that it does not share an interpreter with the server it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time


async def connection(host: str, port: int, path: str, deadline: float) -> tuple[int, int]:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    done = errors = 0
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            if head.startswith(b"HTTP/1.1 200"):
                done += 1
            else:
                errors += 1
    finally:
        writer.close()
    return done, errors


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("This load generator only targets a server on loopback.")
    started = time.monotonic()
    deadline = started + args.duration
    results = await asyncio.gather(
        *(connection(args.host, args.port, args.path, deadline) for _ in range(args.connections))
    )
    seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "requests": sum(done for done, _ in results),
                "errors": sum(errors for _, errors in results),
                "seconds": seconds,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
