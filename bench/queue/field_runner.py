"""One role of one field system in a process of its own: ``field_runner.py SYSTEM ROLE ...``.

The orchestrator (``field.py``) starts this script for every step of every run, so that no
two systems ever share an interpreter, a connection or an import cache. Roles:

* ``prepare``: set up an empty store once (a template the runs are copied from).
* ``enqueue`` (``--n``, ``--batch``; batch 0 = the single-job API): time the enqueues.
* ``fill`` (``--n``, ``--kind``): store jobs for a drain, untimed.
* ``worker`` (``--concurrency``): print ``READY {json}``, wait for "go" on stdin, run until
  SIGTERM, print the result.
* ``latency`` (``--count``, ``--spacing``): enqueue stamp jobs one at a time, paced.

Every role prints its result as one JSON object on the last line of stdout. The systems'
modules are imported only when chosen, so a run never imports another system's packages
(arq's venv has none of the others).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fieldkit import OUT_VAR, Env, FieldSystem
from runner import ready

#: key -> (module, class name, constructor arguments)
SYSTEMS: dict[str, tuple[str, str, tuple[Any, ...]]] = {
    "underway-sqlite": ("field_underway", "UnderwayField", ("sqlite",)),
    "underway-redis": ("field_underway", "UnderwayField", ("redis",)),
    "underway-postgres": ("field_underway", "UnderwayField", ("postgres",)),
    "underway-redis-noprefetch": ("field_underway", "UnderwayField", ("redis", False)),
    "celery": ("peer_celery", "Celery", ()),
    "rq": ("peer_rq", "RQ", ()),
    "arq": ("peer_arq", "Arq", (0.01,)),
    "arq-default": ("peer_arq", "Arq", ()),
    "dramatiq": ("peer_dramatiq", "Dramatiq", ()),
    "dramatiq-tuned": ("peer_dramatiq", "Dramatiq", (10,)),
    "huey": ("peer_huey", "HueyRedis", ()),
    "taskiq": ("peer_taskiq", "Taskiq", ()),
    "taskiq-list": ("peer_taskiq", "Taskiq", ("ListQueueBroker",)),
    "saq": ("peer_saq", "Saq", ()),
    "streaq": ("peer_streaq", "Streaq", ()),
    "procrastinate": ("peer_procrastinate", "Procrastinate", ()),
}
ROLES = ("prepare", "enqueue", "fill", "worker", "latency", "describe")


def load(key: str) -> FieldSystem:
    """Build the system called ``key`` (importing its module only now)."""
    module_name, class_name, args = SYSTEMS[key]
    factory: Callable[..., FieldSystem] = getattr(importlib.import_module(module_name), class_name)
    return factory(*args)


def main(argv: list[str] | None = None) -> int:
    """Run one role and print its JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("system", choices=sorted(SYSTEMS))
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("--db", type=Path, default=Path("jobs.db"))
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--redis", default="")
    parser.add_argument("--postgres", default="")
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--kind", default="noop", choices=("noop", "sleep"))
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--spacing", type=float, default=0.01)
    args = parser.parse_args(argv)
    # Tasks, and the children RQ forks, find the run's directory here.
    os.environ[OUT_VAR] = str(args.out)
    env = Env(db=args.db, out=args.out, redis_url=args.redis, postgres_dsn=args.postgres)
    system = load(args.system)
    result: dict[str, Any]
    if args.role == "describe":
        result = {"versions": system.versions(), "settings": system.settings()}
    elif args.role == "prepare":
        system.prepare(env)
        result = {}
    elif args.role == "enqueue":
        result = system.enqueue(env, args.n, args.batch)
    elif args.role == "fill":
        result = system.fill(env, args.n, args.kind)
    elif args.role == "worker":
        result = system.run_worker(env, args.concurrency, ready)
    else:
        result = system.produce_latency(env, args.count, args.spacing)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
