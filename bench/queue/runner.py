"""One role of one system, in a process of its own: ``runner.py SYSTEM ROLE --db=PATH ...``.

The orchestrator starts this script for every step of every run, so that no two systems
ever share an interpreter, a connection or an import cache. Roles:

* ``enqueue-single`` / ``enqueue-bulk`` (``--n``, ``--batch``): time the enqueues.
* ``fill`` (``--n``): store jobs for a drain, untimed.
* ``worker`` (``--out``, ``--expect``): print ``READY {json}``, wait for a line on stdin,
  run until SIGTERM, print the result.
* ``latency`` (``--count``, ``--spacing``): enqueue jobs one at a time, paced.

Every role prints its result as one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness import READY, System
from sut_huey import HueySQLite
from sut_underway import UnderwaySQLite

SYSTEMS: dict[str, Callable[[], System]] = {
    "underway": UnderwaySQLite,
    "huey": HueySQLite,
}
ROLES = ("enqueue-single", "enqueue-bulk", "fill", "worker", "latency")


def ready(info: Mapping[str, Any]) -> None:
    """Tell the orchestrator the worker is set up, then wait for its "go"."""
    print(READY + json.dumps(dict(info)), flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("the orchestrator went away before saying go")


def main(argv: list[str] | None = None) -> int:
    """Run one role and print its JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("system", choices=sorted(SYSTEMS))
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--spacing", type=float, default=0.02)
    args = parser.parse_args(argv)
    system = SYSTEMS[args.system]()
    result: dict[str, Any]
    if args.role == "enqueue-single":
        result = system.enqueue_single(args.db, args.n)
    elif args.role == "enqueue-bulk":
        result = system.enqueue_bulk(args.db, args.n, args.batch)
    elif args.role == "fill":
        result = system.fill(args.db, args.n)
    elif args.role == "worker":
        if args.out is None:
            parser.error("worker needs --out")
        result = system.run_worker(args.db, args.out, args.expect, ready)
    else:
        result = system.produce_latency(args.db, args.count, args.spacing)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
