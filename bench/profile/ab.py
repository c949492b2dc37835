"""Compare two source trees of underway on one workload, runs interleaved round-robin.

The machine is shared and noisy, so each round runs every tree once, in alternating
order, and the report gives medians (and min-max) of the rate and of the CPU seconds the
measuring process (and, for Redis, the private server) used: CPU time moves far less with
the load of other processes than the wall-clock rate does.

Example, the last commit against the working tree::

    git archive HEAD src | tar -x -C /tmp/head
    .venv/bin/python bench/profile/ab.py --trees /tmp/head/src src -- drain --backend redis

Everything after ``--`` goes to ``hotpaths.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HOTPATHS = Path(__file__).resolve().with_name("hotpaths.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", nargs="+", required=True, help="src folders to compare")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then hotpaths.py arguments")
    args = parser.parse_args()
    extra = args.args[1:] if args.args[:1] == ["--"] else args.args
    results: dict[str, list[dict[str, float]]] = {tree: [] for tree in args.trees}
    for index in range(args.rounds):
        order = args.trees if index % 2 == 0 else list(reversed(args.trees))
        for tree in order:
            env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
            out = subprocess.run(
                [sys.executable, str(HOTPATHS), *extra],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            results[tree].append(row)
            print(tree, {k: row[k] for k in row if k in _SHOWN}, flush=True)
    print()
    for tree, rows in results.items():
        summary = {}
        for key in _SHOWN:
            values = [row[key] for row in rows if key in row]
            if values:
                summary[key] = (
                    f"{statistics.median(values):,.3f} ({min(values):,.3f}-{max(values):,.3f})"
                )
        print(tree, json.dumps(summary))


_SHOWN = ("rate", "cpu_s", "server_cpu_s", "p50_ms", "p99_ms")

if __name__ == "__main__":
    main()
