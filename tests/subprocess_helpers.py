"""Run Python programs in a child process and talk to them, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Child:
    """A child process whose output is read line by line."""

    def __init__(self, *args: str, cwd: Path = ROOT) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []

    def wait_for(self, text: str, timeout: float = 10.0) -> None:
        """Read output until a line contains ``text``; fail if the child exits first."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            if text in line:
                return
        self.process.kill()
        raise AssertionError(f"never saw {text!r}; output was:\n" + "\n".join(self.lines))

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def finish(self, timeout: float = 10.0) -> tuple[int, str]:
        """Wait for the child to exit; return its exit status and all of its output."""
        try:
            rest, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            rest, _ = self.process.communicate()
            message = "child did not exit; output:\n" + "\n".join(self.lines) + rest
            raise AssertionError(message) from None
        return self.process.returncode, "\n".join(self.lines) + "\n" + rest
