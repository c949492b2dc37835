"""Private Redis and PostgreSQL servers for the field benchmark, on free loopback ports.

The benchmark never touches a shared server: it starts its own in a temporary directory and
empties it before every run (Redis: FLUSHALL; PostgreSQL: the run's database is dropped and
copied again from the system's template). Both run with their stock settings but for
persistence, recorded in :meth:`settings`:

* Redis: no RDB snapshots and no AOF (``--save '' --appendonly no``), so that a snapshot's
  fork never lands in the middle of a timing; nothing written to Redis here is durable.
* PostgreSQL: stock ``postgresql.conf`` (fsync on, synchronous_commit on), so every commit
  waits for the disk; ``max_connections`` raised to 200 for the scale runs.

As root, PostgreSQL runs as the ``postgres`` user (it refuses to run as root), as in the
test suite's ``tests/backends/postgres_support.py``.
"""

from __future__ import annotations

import glob
import importlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not accept connections on port {port} in {timeout} s.")


class PrivateRedis:
    """``redis-server`` on a free port, in memory only."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install redis-server")
        self.dir = Path(tempfile.mkdtemp(prefix="underway-bench-redis-"))
        self.port = free_port()
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--logfile", "server.log"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(self.port, 10, "redis-server")
        self.version = (
            subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
            .stdout.split()[2]
            .removeprefix("v=")
        )
        redis: Any = importlib.import_module("redis")
        self.client: Any = redis.Redis(host="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        """Where to connect."""
        return f"redis://127.0.0.1:{self.port}/0"

    def settings(self) -> str:
        """The server's configuration, as measured."""
        return (
            f"redis-server {self.version}, stock configuration on a loopback port but "
            "--save '' --appendonly no (no persistence)"
        )

    def reset(self) -> None:
        """Delete every key."""
        self.client.flushall()

    def server_pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def cpu_s(self) -> float:
        """CPU seconds the server has used so far."""
        return process_cpu_s(self.process.pid)

    def close(self) -> None:
        """Stop the server and delete its directory."""
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def process_cpu_s(pid: int, children: bool = False) -> float:
    """CPU seconds a process has used, all its threads, to the nanosecond (schedstat); with
    ``children``, also those of its children that ended (in clock ticks: the kernel adds
    them when they are reaped). 0 if the process is gone."""
    total = 0.0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0]) / 1e9
            except OSError:
                continue  # a thread that just ended
        if children:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return total
    return total


def child_pids(parent: int) -> list[int]:
    """The live children of a process."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry.name))
    return found


class PrivatePostgres:
    """A PostgreSQL cluster of the benchmark's own, with a database per system template."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        bindir = Path(found[-1]).parent if found else None
        if bindir is None:
            pg_ctl = shutil.which("pg_ctl")
            if pg_ctl is None:
                raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")
            bindir = Path(pg_ctl).parent
        self.pg_ctl = str(bindir / "pg_ctl")
        self.dir = Path(tempfile.mkdtemp(prefix="underway-bench-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run(str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-locale", "--no-instructions")  # fmt: skip
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        )
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip
        psycopg: Any = importlib.import_module("psycopg")
        self.admin: Any = psycopg.connect(self.dsn("postgres"), autocommit=True)
        self.version = str(self.admin.execute("SHOW server_version").fetchone()[0])
        self.fsync = str(self.admin.execute("SHOW fsync").fetchone()[0])
        self.sync_commit = str(self.admin.execute("SHOW synchronous_commit").fetchone()[0])

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            [*self._as, *command], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{command[:2]} failed: {done.stdout}{done.stderr}\n{log}")

    def dsn(self, database: str) -> str:
        """Where to connect to ``database``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def settings(self) -> str:
        """The server's configuration, as measured."""
        return (
            f"PostgreSQL {self.version}, stock postgresql.conf (fsync={self.fsync}, "
            f"synchronous_commit={self.sync_commit}) but max_connections=200, on a "
            "loopback port"
        )

    def cpu_s(self) -> float:
        """CPU seconds the cluster has used so far: the postmaster and every backend,
        those that ended included."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        return process_cpu_s(pid, children=True) + sum(
            process_cpu_s(child) for child in child_pids(pid)
        )

    def create(self, database: str, template: str = "template1") -> None:
        """(Re)create ``database`` as a copy of ``template``."""
        self.admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        self.admin.execute(f'CREATE DATABASE "{database}" TEMPLATE "{template}"')

    def close(self) -> None:
        """Stop the server and delete its directory."""
        self.admin.close()
        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
