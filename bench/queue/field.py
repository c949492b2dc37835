"""Job queues against the field: underway on three stores and nine peers, the same workloads.

Usage (from the repository root; ``bench/run_all.sh`` sets up the venvs and calls this)::

    python bench/queue/field.py            # full: writes bench/results/field.{json,md}
    python bench/queue/field.py --quick    # smoke test: tiny N, 1 repetition; prints only

Workloads (N = ``--n``; every run on an emptied store, every worker a process of its own):

* ``throughput``: N no-op jobs stored first; then one worker process at concurrency C
  (``--concurrency``, 10) drains them. Timed from "go" (the worker is set up and waiting)
  to the latest completion recorded by the jobs themselves.
* ``enqueue_single`` / ``enqueue_bulk``: N no-op enqueues through the single-job API, and
  through the bulk API (``--batch`` per call) where the system has one.
* ``latency``: with an idle worker waiting, jobs enqueued one at a time ``--latency-spacing``
  apart from another process; p50/p99 of the job's start minus the moment enqueue was called.
* ``saturation``: ``--saturation-n`` jobs that wait 10 ms (``await asyncio.sleep`` where the
  system runs coroutines, ``time.sleep`` in a thread where it runs functions), one worker
  process at concurrency 100.
* ``scale``: as throughput with 2 and 4 worker processes (1 is the throughput run).
* ``memory``: ``--memory-n`` no-op jobs through one worker process; its RSS sampled as it goes.

Repetitions are interleaved round-robin: each repetition runs every workload on every system
before the next starts, and the order of the systems rotates by one each repetition. The
memory workload runs once, after the repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import field_report
import harness
from fieldkit import DONE_LOG, RECORD
from harness import Interpreter, WorkerProcess, log, spread
from servers import PrivatePostgres, PrivateRedis, child_pids, process_cpu_s

FIELD_RUNNER = harness.HERE / "field_runner.py"
JSON_PATH = harness.ROOT / "bench/results/field.json"
MD_PATH = harness.ROOT / "bench/results/field.md"
WORKLOADS = (
    "throughput",
    "enqueue_single",
    "enqueue_bulk",
    "latency",
    "saturation",
    "scale",
    "memory",
)
UNDERWAY = ("underway-sqlite", "underway-redis", "underway-postgres")
PEERS = (
    "celery",
    "rq",
    "arq",
    "dramatiq",
    "huey",
    "taskiq",
    "saq",
    "streaq",
    "procrastinate",
)
#: Variants with another setting: measured on throughput and latency only.
VARIANTS = ("arq-default", "dramatiq-tuned", "taskiq-list", "underway-redis-noprefetch")
VARIANT_WORKLOADS = ("throughput", "latency")
#: Systems that drain slowly here (RQ runs one job at a time per process; the others drained
#: under 500 jobs/s in trial runs): N divided by this on the draining workloads, so that a
#: full run stays within about 20 minutes on a 2-CPU machine. Rates are taken between the
#: first and the last job's end, so a smaller N measures the same steady state (written
#: into the report).
SLOW = {"rq": 20, "celery": 4, "procrastinate": 4, "streaq": 4, "saq": 2}
POLL_S = 0.02
#: Workloads that only vary the parameters of the throughput run: the quick mode runs them
#: for underway alone, to stay within a CI smoke test's minutes.
HEAVY = ("saturation", "scale", "memory")


@dataclass(frozen=True, slots=True)
class Config:
    """What one benchmark run measures."""

    n: int
    repetitions: int
    batch: int
    concurrency: int
    latency_jobs: int
    latency_spacing_s: float
    idle_s: float
    saturation_n: int
    saturation_concurrency: int
    scale: tuple[int, ...]
    scale_n: int
    memory_n: int
    memory_n_peers: int
    workloads: tuple[str, ...]
    systems: tuple[str, ...]
    quick: bool
    slow: dict[str, int] = field(default_factory=dict)


def n_for(config: Config, system: str, n: int) -> int:
    """The number of jobs a draining workload uses for ``system``."""
    return max(1, n // config.slow.get(system, 1))


# -- one run of one workload on one system --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One system as the orchestrator runs it: its description and its interpreter."""

    key: str
    label: str
    store: str
    has_bulk: bool
    concurrent: bool
    interpreter: Interpreter
    description: dict[str, Any]


class Bench:
    """Runs workloads on emptied stores, in fresh directories under ``scratch``."""

    def __init__(
        self,
        config: Config,
        scratch: Path,
        redis: PrivateRedis | None,
        postgres: PrivatePostgres | None,
    ) -> None:
        self.config = config
        self.scratch = scratch
        self.redis = redis
        self.postgres = postgres
        self._count = 0

    def _options(self, target: Target, where: Path) -> dict[str, object]:
        options: dict[str, object] = {"db": where / "jobs.db", "out": where / "out"}
        if self.redis is not None:
            options["redis"] = self.redis.url
        if self.postgres is not None:
            options["postgres"] = self.postgres.dsn("bench")
        return options

    def command(self, target: Target, role: str, where: Path, **opts: object) -> list[str]:
        """The command line of one ``field_runner.py`` role."""
        merged = {**self._options(target, where), **opts}
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in merged.items()]
        return [target.interpreter.python, str(FIELD_RUNNER), target.key, role, *flags]

    def _run(self, target: Target, role: str, where: Path, timeout: float, **opts: object) -> Any:
        command = self.command(target, role, where, **opts)
        return harness.run_json(target.interpreter, command, timeout)

    def prepare(self, target: Target) -> None:
        """Set up the system's template database once (PostgreSQL systems)."""
        if target.store != "postgres" or self.postgres is None:
            return
        template = f"tpl_{target.key.replace('-', '_')}"
        self.postgres.create(template)
        where = self.scratch / f"prepare-{target.key}"
        (where / "out").mkdir(parents=True)
        command = self.command(target, "prepare", where, postgres=self.postgres.dsn(template))
        harness.run_json(target.interpreter, command, 120)

    def _reset(self, target: Target) -> None:
        if target.store == "redis" and self.redis is not None:
            self.redis.reset()
        elif target.store == "postgres" and self.postgres is not None:
            self.postgres.create("bench", f"tpl_{target.key.replace('-', '_')}")

    def run(self, workload: str, target: Target, variant: int = 0) -> dict[str, Any]:
        """Run one workload once on one system; return its metrics and raw figures."""
        self._count += 1
        where = self.scratch / f"{self._count:04d}-{workload}-{target.key}"
        (where / "out").mkdir(parents=True)
        self._reset(target)
        config = self.config
        try:
            if workload == "enqueue_single":
                return self.enqueue(target, where, 0)
            if workload == "enqueue_bulk":
                return self.enqueue(target, where, config.batch)
            if workload == "latency":
                return self.latency(target, where)
            if workload == "throughput":
                n = n_for(config, target.key, config.n)
                return self.drain(target, where, n, "noop", config.concurrency, 1)
            if workload == "saturation":
                n = n_for(config, target.key, config.saturation_n)
                return self.drain(target, where, n, "sleep", config.saturation_concurrency, 1)
            if workload == "scale":
                n = n_for(config, target.key, config.scale_n)
                return self.drain(target, where, n, "noop", config.concurrency, variant)
            n = config.memory_n if target.key in UNDERWAY else config.memory_n_peers
            n = n_for(config, target.key, n)
            return self.drain(target, where, n, "noop", config.concurrency, 1, memory=True)
        finally:
            shutil.rmtree(where, ignore_errors=True)

    def _check_source(self, target: Target, result: dict[str, Any]) -> None:
        module_file = result.get("module_file")
        source = str(target.interpreter.source)
        if module_file is not None and not module_file.startswith(source):
            raise RuntimeError(
                f"{target.key} imported underway from {module_file}, not from {source}."
            )

    def enqueue(self, target: Target, where: Path, batch: int) -> dict[str, Any]:
        """Time N enqueues in one producer process."""
        n = self.config.n
        result = self._run(target, "enqueue", where, 120 + n / 50, n=n, batch=batch)
        self._check_source(target, result)
        stored = result.get("stored")
        if stored is not None and stored != n + 1:
            raise RuntimeError(f"{target.key} stored {stored} jobs, not {n} + 1 warm-up.")
        elapsed: float = result["elapsed_s"]
        return {"metrics": {"jobs_per_s": n / elapsed, "elapsed_s": elapsed}}

    def _start_workers(
        self, target: Target, where: Path, concurrency: int, processes: int
    ) -> list[WorkerProcess]:
        workers: list[WorkerProcess] = []
        try:
            for index in range(processes):
                command = self.command(target, "worker", where, concurrency=concurrency)
                workers.append(
                    WorkerProcess(target.interpreter, command, where / f"worker{index}.log")
                )
            for worker in workers:
                self._check_source(target, worker.wait_ready(60))
        except BaseException:
            for worker in workers:
                worker.kill()
            raise
        return workers

    @staticmethod
    def _stop(workers: Sequence[WorkerProcess]) -> list[str]:
        """Stop the workers (SIGTERM, then SIGKILL after 30 s); return what went wrong."""
        for worker in workers:
            if worker.alive():
                worker.proc.terminate()
        problems = []
        for worker in workers:
            try:
                worker.stop(timeout=30)
            except (RuntimeError, ValueError) as exc:
                worker.kill()
                problems.append(str(exc).splitlines()[0][:300])
        return problems

    def drain(
        self,
        target: Target,
        where: Path,
        n: int,
        kind: str,
        concurrency: int,
        processes: int,
        *,
        memory: bool = False,
    ) -> dict[str, Any]:
        """Fill the store with ``n`` jobs, then time ``processes`` workers draining it."""
        filled = self._run(target, "fill", where, 120 + n / 100, n=n, kind=kind)
        stored = filled.get("stored")
        if stored is not None and stored != n:
            raise RuntimeError(f"{target.key} filled {stored} jobs, not {n}.")
        done_log = where / "out" / DONE_LOG
        workers = self._start_workers(target, where, concurrency, processes)
        samples: list[tuple[int, int]] = []
        pid = workers[0].proc.pid
        rss_ready = harness_rss(pid)
        try:
            t_go = min(worker.go() for worker in workers)
            cpu_go = self._cpu(target, workers)
            deadline = time.monotonic() + 120 + n / 50
            while True:
                done = done_log.stat().st_size // RECORD.size if done_log.exists() else 0
                if memory:
                    samples.append((done, harness_rss(pid)))
                if done >= n:
                    cpu_done = self._cpu(target, workers)
                    break
                if not all(worker.alive() for worker in workers):
                    raise RuntimeError(f"a {target.key} worker exited after {done} of {n} jobs")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{target.key} finished {done} of {n} jobs in time")
                time.sleep(POLL_S)
            rss_end = harness_rss(pid)
            time.sleep(0.2)  # late duplicates, if any, show in the count
        except BaseException:
            for worker in workers:
                worker.kill()
            raise
        problems = self._stop(workers)
        times = sorted(t for (t,) in RECORD.iter_unpack(done_log.read_bytes()))
        # From the first job's end to the last's: a worker's start-up after "go" (Celery's
        # mingle waits a second for other workers, for one) is not part of its throughput.
        elapsed = times[-1] - times[0]
        result: dict[str, Any] = {
            "metrics": {
                "jobs_per_s": (len(times) - 1) / elapsed if elapsed > 0 else float("nan"),
                "elapsed_s": elapsed,
                "first_done_after_go_s": times[0] - t_go,
            },
            "n": n,
            "completed": len(times),
            "concurrency": concurrency,
            "processes": processes,
        }
        result["metrics"].update(cpu_shares(cpu_go, cpu_done))
        if problems:
            result["stop_problems"] = problems
        if memory:
            result["metrics"].update(rss_summary(rss_ready, rss_end, samples, n))
            result["rss_samples"] = samples[:: max(1, len(samples) // 200)]
        return result

    def _cpu(self, target: Target, workers: Sequence[WorkerProcess]) -> CpuSnapshot:
        """The CPU time used so far by the store's server, the workers and the machine."""
        server = 0.0
        if target.store == "redis" and self.redis is not None:
            server = self.redis.cpu_s()
        elif target.store == "postgres" and self.postgres is not None:
            server = self.postgres.cpu_s()
        pids = [worker.proc.pid for worker in workers]
        worker_cpu = sum(process_cpu_s(p, children=True) for p in pids)
        worker_cpu += sum(process_cpu_s(c) for p in pids for c in child_pids(p))
        busy, total = machine_jiffies()
        return CpuSnapshot(time.monotonic(), server, worker_cpu, busy, total)

    def latency(self, target: Target, where: Path) -> dict[str, Any]:
        """Start an idle worker, then time jobs enqueued one at a time from another process."""
        count, spacing = self.config.latency_jobs, self.config.latency_spacing_s
        out = where / "out"
        workers = self._start_workers(target, where, self.config.concurrency, 1)
        try:
            workers[0].go()
            time.sleep(self.config.idle_s)
            produced = self._run(
                target, "latency", where, 60 + count * spacing * 2, count=count, spacing=spacing
            )
            self._check_source(target, produced)
            harness.wait_until(
                lambda: len(harness.read_stamps(out)) >= count,
                30,
                f"{target.key} to start {count} latency jobs",
                workers[0].alive,
            )
        except BaseException:
            workers[0].kill()
            raise
        problems = self._stop(workers)
        started = harness.read_stamps(out)
        enqueued: list[float] = produced["enqueued"]
        returned: list[float] = produced["returned"]
        late = [(started[i] - enqueued[i]) * 1e3 for i in range(count)]
        calls = [(returned[i] - enqueued[i]) * 1e3 for i in range(count)]
        result: dict[str, Any] = {
            "metrics": {
                "p50_ms": harness.percentile(late, 50),
                "p99_ms": harness.percentile(late, 99),
                "max_ms": max(late),
                "enqueue_call_p50_ms": harness.percentile(calls, 50),
            },
            "latency_ms": [round(x, 3) for x in late],
        }
        if problems:
            result["stop_problems"] = problems
        return result


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU time used so far: seconds of the server and of the workers, jiffies of all CPUs."""

    at: float
    server_s: float
    workers_s: float
    busy: int
    total: int


def machine_jiffies() -> tuple[int, int]:
    """Busy and total jiffies of all CPUs since boot (``/proc/stat``)."""
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def cpu_shares(start: CpuSnapshot, end: CpuSnapshot) -> dict[str, float]:
    """Where the CPU went during a drain: the server's and the workers' share of one core
    (100 = one core busy all along), and how busy the machine's CPUs were (100 = all)."""
    seconds = max(end.at - start.at, 1e-9)
    ticks = max(end.total - start.total, 1)
    return {
        "server_cpu_pct": 100 * (end.server_s - start.server_s) / seconds,
        "workers_cpu_pct": 100 * (end.workers_s - start.workers_s) / seconds,
        "machine_busy_pct": 100 * (end.busy - start.busy) / ticks,
    }


def harness_rss(pid: int) -> int:
    """The resident set size of process ``pid`` in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_summary(
    ready: int, end: int, samples: Sequence[tuple[int, int]], n: int
) -> dict[str, float]:
    """RSS (MiB) when set up, after the first 10% of the jobs, at the end, and its peak."""
    tenth = next((rss for done, rss in samples if done >= n // 10 and rss), end)
    peak = max((rss for _, rss in samples), default=end)
    return {
        "rss_ready_mib": ready / 1024,
        "rss_10pct_mib": tenth / 1024,
        "rss_end_mib": end / 1024,
        "rss_peak_mib": peak / 1024,
        "rss_growth_mib": (end - tenth) / 1024,
    }


# -- the whole benchmark --------------------------------------------------------------------


def describe(interpreter: Interpreter, key: str) -> dict[str, Any]:
    """Ask a system's own interpreter for its versions and settings."""
    done = subprocess.run(
        [interpreter.python, str(FIELD_RUNNER), key, "describe"],
        capture_output=True,
        text=True,
        cwd=harness.ROOT,
        env=interpreter.env(),
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{key} cannot start: {done.stderr.strip().splitlines()[-1:]}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def targets_for(config: Config, python: str, source: Path) -> tuple[list[Target], dict[str, str]]:
    """Build the systems to run; return them and those that cannot start, with why."""
    from field_runner import load

    targets: list[Target] = []
    skipped: dict[str, str] = {}
    for key in config.systems:
        system = load(key)
        venv_python = python
        if system.venv:
            venv_python = str(Path(python).parent.parent / system.venv / "bin" / "python")
        interpreter = Interpreter(venv_python, source)
        try:
            description = describe(interpreter, key)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            skipped[key] = str(exc)
            log(f"skipping {key}: {exc}")
            continue
        targets.append(
            Target(
                key,
                system.label,
                system.store,
                system.has_bulk,
                system.concurrent,
                interpreter,
                description,
            )
        )
    return targets, skipped


def plan(config: Config, target: Target) -> list[tuple[str, int]]:
    """The (workload, processes) runs of one repetition for one system, memory excluded."""
    runs: list[tuple[str, int]] = []
    for workload in config.workloads:
        if workload == "memory":
            continue
        if target.key in VARIANTS and workload not in VARIANT_WORKLOADS:
            continue
        if workload == "enqueue_bulk" and not target.has_bulk:
            continue
        if workload == "saturation" and not target.concurrent:
            continue
        if config.quick and workload in HEAVY and target.key not in UNDERWAY:
            continue
        if workload == "scale":
            runs += [("scale", k) for k in config.scale if k > 1]
        else:
            runs.append((workload, 0))
    return runs


def start_servers(
    targets: list[Target], skipped: dict[str, str]
) -> tuple[PrivateRedis | None, PrivatePostgres | None]:
    """Start the servers the systems need; skip the systems whose server cannot start."""
    stores = {t.store for t in targets}
    redis: PrivateRedis | None = None
    postgres: PrivatePostgres | None = None
    failed: dict[str, str] = {}
    if "redis" in stores:
        try:
            redis = PrivateRedis()
        except (RuntimeError, OSError) as exc:
            failed["redis"] = f"no private Redis server: {exc}"
    if "postgres" in stores:
        try:
            postgres = PrivatePostgres()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            failed["postgres"] = f"no private PostgreSQL server: {exc}"
    for target in list(targets):
        if target.store in failed:
            skipped[target.key] = failed[target.store]
            targets.remove(target)
    for why in failed.values():
        log(why)
    return redis, postgres


def measure_all(config: Config, python: str, ref: str, scratch: Path) -> dict[str, Any]:
    """Run every repetition of every workload on every system; return the report."""
    source = harness.snapshot(ref, scratch)
    runs_dir = scratch / "runs"
    runs_dir.mkdir()
    targets, skipped = targets_for(config, python, source)
    redis, postgres = start_servers(targets, skipped)
    environment = harness.machine(Interpreter(python, source), ref, runs_dir)
    errors: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    began = time.perf_counter()
    try:
        bench = Bench(config, runs_dir, redis, postgres)
        for target in list(targets):
            try:
                bench.prepare(target)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                skipped[target.key] = f"prepare failed: {exc}"
                targets.remove(target)

        def one(rep: int, workload: str, target: Target, processes: int) -> None:
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            try:
                run = bench.run(workload, target, processes)
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
                message = str(exc)[:2000]
                errors.append(
                    {"repetition": rep, "workload": workload, "system": target.key,
                     "processes": processes, "error": message}
                )  # fmt: skip
                log(f"rep {rep + 1} {workload} {target.key}: FAILED {message[:300]}")
                return
            name = f"scale{processes}" if workload == "scale" else workload
            runs.append(
                {"repetition": rep, "workload": name, "system": target.key,
                 "loadavg_1min_before": load, **run}
            )  # fmt: skip
            figures = "  ".join(f"{k} {v:,.3f}" for k, v in run["metrics"].items())
            log(
                f"rep {rep + 1}/{config.repetitions} {name:14} {target.key:18} {figures}"
                f"  ({time.perf_counter() - t0:.1f} s)"
            )

        for rep in range(config.repetitions):
            shift = rep % len(targets) if targets else 0
            order = targets[shift:] + targets[:shift]
            for workload in config.workloads:
                for target in order:
                    for name, processes in plan(config, target):
                        if name == workload:
                            one(rep, workload, target, processes)
        if "memory" in config.workloads:
            for target in targets:
                if target.key in VARIANTS or (config.quick and target.key not in UNDERWAY):
                    continue
                one(0, "memory", target, 1)
    finally:
        if redis is not None:
            redis.close()
        if postgres is not None:
            postgres.close()
    servers = {}
    if redis is not None:
        servers["redis"] = redis.settings()
    if postgres is not None:
        servers["postgres"] = postgres.settings()
    versions: dict[str, str] = {}
    for target in targets:
        versions.update(target.description["versions"])
    report: dict[str, Any] = {
        "suite": "field",
        "config": asdict(config),
        "environment": {**environment, "versions": versions, "servers": servers},
        "systems": {
            t.key: {
                "label": t.label,
                "store": t.store,
                "has_bulk": t.has_bulk,
                "concurrent": t.concurrent,
                "python": t.interpreter.python,
                "settings": t.description["settings"],
            }
            for t in targets
        },
        "skipped": skipped,
        "errors": errors,
        "runs": runs,
        "wall_seconds": time.perf_counter() - began,
    }
    report["aggregate"] = aggregate(runs)
    return report


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median, min and max of every metric, by workload, metric and system."""
    grouped: dict[tuple[str, str], list[dict[str, float]]] = {}
    for run in runs:
        grouped.setdefault((run["workload"], run["system"]), []).append(run["metrics"])
    table: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for (workload, system), metrics in grouped.items():
        for metric in metrics[0]:
            values = [m[metric] for m in metrics if metric in m]
            table.setdefault(workload, {}).setdefault(metric, {})[system] = spread(values)
    return table


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old`` with the systems measured in ``new`` replaced by their new runs.

    For re-measuring underway at a later commit while keeping the peers' runs: the report
    then says which run (date, commit) each system's figures come from.
    """
    replaced = set(new["systems"])
    merged = dict(old)
    merged["systems"] = {**old["systems"], **new["systems"]}
    merged["runs"] = [r for r in old["runs"] if r["system"] not in replaced] + new["runs"]
    merged["errors"] = [e for e in old["errors"] if e["system"] not in replaced] + new["errors"]
    merged["skipped"] = {
        **{k: v for k, v in old["skipped"].items() if k not in replaced},
        **new["skipped"],
    }
    env = new["environment"]
    merged["remeasured"] = [
        *old.get("remeasured", []),
        {
            "systems": sorted(replaced),
            "date_utc": env["date_utc"],
            "git_commit": env["git_commit"],
            "config": new["config"],
            "wall_seconds": new["wall_seconds"],
        },
    ]
    merged["aggregate"] = aggregate(merged["runs"])
    return merged


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Config]:
    """Read the command line into the run's configuration."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="tiny N, 1 repetition, prints only")
    add("--n", type=int, help="jobs per throughput, enqueue and scale run (10,000)")
    add("--repetitions", type=int, help="runs per workload and system (3)")
    add("--batch", type=int, default=1000, help="jobs per bulk call (1,000)")
    add("--concurrency", type=int, default=10, help="jobs at a time per worker (10)")
    add("--latency-jobs", type=int, help="jobs per latency run (200)")
    add("--latency-spacing", type=float, default=0.01, help="seconds (0.01)")
    add("--idle", type=float, default=1.0, help="worker idle seconds before latency (1.0)")
    add("--saturation-n", type=int, help="jobs per saturation run (3,000)")
    add("--saturation-concurrency", type=int, default=100, help="(100)")
    add("--scale", default="1,2,4", help="worker processes for the scale runs (1,2,4)")
    add("--scale-n", type=int, help="jobs per scale run with 2 or 4 workers (5,000)")
    add("--memory-n", type=int, help="jobs through the memory run for underway (100,000)")
    add("--memory-n-peers", type=int, help="jobs through the memory run for peers (10,000)")
    add("--workloads", default=",".join(WORKLOADS), help=f"comma-separated: {WORKLOADS}")
    add("--systems", help="comma-separated (default: all; --quick: all but the variants)")
    add("--json", type=Path, help=f"raw results (full mode: {JSON_PATH})")
    add("--markdown", type=Path, help=f"tables (full mode: {MD_PATH})")
    add("--python", default=sys.executable, help="interpreter for the runs (.venv-bench)")
    add("--ref", default="HEAD", help='git revision of underway to measure, or "worktree"')
    add("--merge", type=Path, help="replace these systems' runs in a saved JSON report")
    add("--render", type=Path, help="rewrite the markdown from a saved JSON report and exit")
    args = parser.parse_args(argv)
    from field_runner import SYSTEMS

    workloads = tuple(w for w in args.workloads.split(",") if w)
    quick = args.quick
    default_systems = UNDERWAY + PEERS + (() if quick else VARIANTS)
    systems = tuple(s for s in (args.systems or ",".join(default_systems)).split(",") if s)
    if unknown := set(workloads) - set(WORKLOADS):
        parser.error(f"unknown workloads {sorted(unknown)}")
    if unknown := set(systems) - set(SYSTEMS):
        parser.error(f"unknown systems {sorted(unknown)}")
    config = Config(
        n=args.n or (200 if quick else 10_000),
        repetitions=args.repetitions or (1 if quick else 3),
        batch=args.batch,
        concurrency=args.concurrency,
        latency_jobs=args.latency_jobs or (20 if quick else 200),
        latency_spacing_s=args.latency_spacing,
        idle_s=0.3 if quick else args.idle,
        saturation_n=args.saturation_n or (200 if quick else 3_000),
        saturation_concurrency=args.saturation_concurrency,
        scale_n=args.scale_n or (200 if quick else 5_000),
        scale=(1, 2) if quick else tuple(int(k) for k in args.scale.split(",")),
        memory_n=args.memory_n or (500 if quick else 100_000),
        memory_n_peers=args.memory_n_peers or (500 if quick else 10_000),
        workloads=workloads,
        systems=systems,
        quick=quick,
        slow={} if quick else dict(SLOW),
    )
    return args, config


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and report it."""
    args, config = parse(argv)
    # SIGTERM unwinds like Ctrl-C, so that the private servers and workers are stopped.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if args.render is not None:
        report = json.loads(args.render.read_text())
        text = field_report.markdown(report)
        harness.write_markdown(args.markdown or MD_PATH, field_report.MARKER, text)
        return 0
    json_path: Path | None = args.json or (None if config.quick else JSON_PATH)
    md_path: Path | None = args.markdown or (None if config.quick else MD_PATH)
    with tempfile.TemporaryDirectory(prefix="underway-field-bench-") as tmp:
        report = measure_all(config, args.python, args.ref, Path(tmp))
    if args.merge is not None:
        report = merge(json.loads(args.merge.read_text()), report)
    text = field_report.markdown(report)
    print(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1) + "\n")
    if md_path is not None:
        harness.write_markdown(md_path, field_report.MARKER, text)
    failed = len(report["errors"]) + len(report["skipped"])
    if failed:
        log(f"{len(report['errors'])} run(s) failed, {len(report['skipped'])} system(s) skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
