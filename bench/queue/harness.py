"""The machinery of the queue benchmarks, shared by every system and workload.

A *system* (:class:`System`) is one job queue with one configuration: it knows how to enqueue,
fill a store, run a worker and tell when a drain is over. ``runner.py`` runs one of its
roles in a fresh interpreter; the suite script (``sqlite_vs_huey.py``) decides which runs
happen in which order and turns them into a report with the helpers below: statistics,
worker-process control, the machine's description, and markdown rendering.

Timestamps that cross a process boundary are ``time.time()`` (one clock for the machine);
durations measured inside one process use ``time.perf_counter()``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Protocol

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RUNNER = HERE / "runner.py"

#: How often the orchestrator looks for the end of a drain. Each look is one cheap read in
#: another process, so it costs the worker nothing measurable; the end time itself comes from
#: the system's own record, not from when the look happened.
POLL_S = 0.05
#: The first line a worker process prints once it is set up, before it waits for "go".
READY = "READY "

Ready = Callable[[Mapping[str, Any]], None]


class DrainProbe(Protocol):
    """Tells, from outside the worker process, whether a drain has finished."""

    def poll(self) -> float | None:
        """Return the ``time.time()`` at which the last job finished, or None if not yet."""

    def close(self) -> None:
        """Release what the probe holds (a database connection, say)."""


class System(Protocol):
    """One job queue under test, with the settings it is measured with.

    The methods without ``probe`` run in a ``runner.py`` subprocess, one call per process;
    ``probe`` runs in the orchestrator. Every method gets a database path in a fresh
    directory of its own.
    """

    #: Short key used on command lines and in the JSON.
    key: str
    #: Name shown in tables.
    label: str
    #: Whether the system has a bulk enqueue API.
    has_bulk: bool

    def settings(self) -> dict[str, Any]:
        """Describe how this system is configured (worker, storage, durability)."""

    def versions(self) -> dict[str, str]:
        """Return the versions of the packages under test, by distribution name."""

    def enqueue_single(self, db: Path, n: int) -> dict[str, Any]:
        """Time ``n`` enqueues of a no-op job through the single-job API."""

    def enqueue_bulk(self, db: Path, n: int, batch: int) -> dict[str, Any]:
        """Time ``n`` enqueues of a no-op job through the bulk API, ``batch`` per call."""

    def fill(self, db: Path, n: int) -> dict[str, Any]:
        """Store ``n`` no-op jobs as fast as possible (not timed: it sets up a drain)."""

    def run_worker(self, db: Path, out: Path, expect: int, ready: Ready) -> dict[str, Any]:
        """Set up one worker process, call ``ready`` (which returns on "go"), then run.

        Returns when the process is told to stop (SIGTERM). The result has ``t_start``, the
        ``time.time()`` just before the worker began taking jobs. ``expect`` > 0 asks the
        worker to leave a record from which :meth:`probe` can tell when ``expect`` jobs have
        finished; the latency task writes its start time to ``out/<index>``.
        """

    def produce_latency(self, db: Path, count: int, spacing: float) -> dict[str, Any]:
        """Enqueue ``count`` latency jobs ``spacing`` seconds apart; return enqueue times."""

    def probe(self, db: Path, out: Path, n: int) -> DrainProbe:
        """Return a probe for the end of a drain of ``n`` jobs (in the orchestrator)."""


def write_stamp(out: Path, index: int, started: float) -> None:
    """Record a latency job's start time as ``out/<index>`` (tmp then rename: never torn)."""
    tmp = out / f".{index}.tmp"
    tmp.write_text(repr(started))
    tmp.rename(out / str(index))


def read_stamps(out: Path) -> dict[int, float]:
    """Return the start time of every latency job recorded in ``out``."""
    return {int(p.name): float(p.read_text()) for p in out.iterdir() if p.name.isdigit()}


def write_marker(path: Path, payload: Mapping[str, Any]) -> None:
    """Write a small JSON file atomically, for a probe in another process to find."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload))
    tmp.rename(path)


# -- statistics -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0-100) with linear interpolation, like numpy's."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of one metric over the repetitions."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


# -- processes ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Interpreter:
    """How to start a run: which Python, and where it imports underway from."""

    python: str
    source: Path

    def env(self) -> dict[str, str]:
        """The environment of a run: the snapshot of underway first on the path."""
        return {**os.environ, "PYTHONPATH": str(self.source), "PYTHONHASHSEED": "0"}

    def command(self, system: str, role: str, db: Path, **options: object) -> list[str]:
        """The command line of one ``runner.py`` role."""
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
        return [self.python, str(RUNNER), system, role, f"--db={db}", *flags]


def run_json(interpreter: Interpreter, command: list[str], timeout: float) -> dict[str, Any]:
    """Run a ``runner.py`` role to completion and return the JSON it printed last."""
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=interpreter.env(),
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


class WorkerProcess:
    """A worker in a process of its own, started, released with "go", and stopped.

    The process prints ``READY {json}`` once set up and waits for a line on stdin, so the
    interpreter's start-up and imports are never part of a timing; on SIGTERM it stops and
    prints its result as the last line of stdout. Its stderr goes to ``log``.
    """

    def __init__(self, interpreter: Interpreter, command: list[str], log: Path) -> None:
        self.command = command
        self.log = log
        self._log_file: IO[str] = log.open("w")
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
            cwd=ROOT,
            env=interpreter.env(),
        )

    def _fail(self, what: str) -> RuntimeError:
        self.kill()
        return RuntimeError(f"worker {' '.join(self.command)} {what}:\n{self.log.read_text()}")

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for the READY line and return the set-up details it carries."""
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if readable else ""
        if not line.startswith(READY):
            raise self._fail(f"did not get ready within {timeout} s (got {line!r})")
        info: dict[str, Any] = json.loads(line[len(READY) :])
        return info

    def go(self) -> float:
        """Let the worker start; return when it was told to."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return time.time()

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        """Stop the worker gracefully (SIGTERM) and return its result."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self._fail(f"did not stop within {timeout} s of SIGTERM") from None
        finally:
            self._log_file.close()
        lines = out.strip().splitlines()
        if self.proc.returncode != 0 or not lines:
            raise RuntimeError(
                f"worker {' '.join(self.command)} exited with {self.proc.returncode}:\n"
                f"{self.log.read_text()}"
            )
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def kill(self) -> None:
        """Kill the process at once (used when something already went wrong)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self._log_file.closed:
            self._log_file.close()


def wait_until(
    check: Callable[[], Any], timeout: float, what: str, alive: Callable[[], bool]
) -> Any:
    """Call ``check`` every :data:`POLL_S` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if not alive():
            raise RuntimeError(f"the worker exited before {what}.")
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting {timeout:.0f} s for {what}.")
        time.sleep(POLL_S)


# -- what was measured ----------------------------------------------------------------------


def snapshot(ref: str, into: Path) -> Path:
    """Copy ``src/underway`` as of ``ref`` (a git revision, or "worktree") under ``into``.

    Every run imports underway from this copy, so that edits made to the working tree while
    the benchmark runs cannot change the code under test halfway through. Returns the
    directory to put on ``PYTHONPATH``.
    """
    target = into / "src"
    if ref == "worktree":
        shutil.copytree(
            ROOT / "src" / "underway",
            target / "underway",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        return target
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "src/underway"],
        capture_output=True,
        cwd=ROOT,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return target


def git(*args: str) -> str:
    """Return the output of a git command in the repository, or "" if it fails."""
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=ROOT, check=False, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def cpu_model() -> str:
    """Return the first ``model name`` of /proc/cpuinfo, or the platform's processor."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def filesystem_of(path: Path) -> str:
    """Return ``device type`` of the mount that holds ``path`` (Linux), or "unknown"."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    best: list[str] = []
    resolved = str(path.resolve())
    for fields in mounts:
        point = fields[1]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[1] if best else ""):
            best = fields
    return f"{best[2]} on {best[1]} ({best[0]})" if best else "unknown"


def machine(interpreter: Interpreter, ref: str, scratch: Path) -> dict[str, Any]:
    """Describe the machine, the interpreter and the code under test."""
    probe = subprocess.run(
        [
            interpreter.python,
            "-c",
            "import json, platform, sqlite3, sys; print(json.dumps({'python': "
            "platform.python_version(), 'implementation': platform.python_implementation(), "
            "'sqlite': sqlite3.sqlite_version, 'executable': sys.executable}))",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=interpreter.env(),
    )
    return {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "interpreter": json.loads(probe.stdout),
        "scratch_filesystem": filesystem_of(scratch),
        "underway_source": ref,
        "git_commit": git("rev-parse", "HEAD" if ref == "worktree" else ref),
        "git_dirty_src": git("status", "--porcelain", "--", "src") if ref == "worktree" else "",
        "loadavg_before": list(os.getloadavg()),
    }


def log(message: str) -> None:
    """Progress goes to stderr, so that stdout carries only the report."""
    print(message, file=sys.stderr, flush=True)


# -- reporting ------------------------------------------------------------------------------


def fmt(value: float) -> str:
    """A figure with about three significant digits and thousands separators."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def cell(stats: Mapping[str, float] | None) -> str:
    """Format a median with its min–max range, or "n/a"."""
    if stats is None:
        return "n/a"
    if stats["n"] == 1:
        return fmt(stats["median"])
    return f"{fmt(stats['median'])} ({fmt(stats['min'])}–{fmt(stats['max'])})"


def ratio(ours: Mapping[str, float] | None, theirs: Mapping[str, float] | None) -> str:
    """Format the ratio of two medians, or "n/a"."""
    if ours is None or theirs is None or theirs["median"] == 0:
        return "n/a"
    return f"{ours['median'] / theirs['median']:.2f}×"


def write_markdown(path: Path, marker: str, text: str) -> None:
    """Write ``text`` below ``marker``, keeping whatever a person wrote above it."""
    preamble = ""
    if path.exists():
        old = path.read_text()
        if marker in old:
            preamble = old.split(marker, 1)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{preamble}{marker}\n\n{text}")
