"""The underway command line: `underway run`."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

from tests.subprocess_helpers import Child


def test_underway_run_starts_the_loops_a_script_started(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            import underway

            @underway.loop(seconds=0.01, count=2)
            async def hello() -> None:
                print("hello", sys.argv[1:], flush=True)

            hello.start()
            """
        )
    )
    code, output = Child("-m", "underway", "run", str(script), "--flag", "x").finish()
    assert code == 0, output
    assert output.count("hello ['--flag', 'x']") == 2


def test_underway_run_exits_non_zero_when_a_loop_fails(tmp_path: Path) -> None:
    script = tmp_path / "bad.py"
    script.write_text(
        textwrap.dedent(
            """
            import underway

            @underway.loop(seconds=0, name="importer")
            async def bad() -> None:
                raise RuntimeError("no such file")

            bad.start()
            """
        )
    )
    code, output = Child("-m", "underway", "run", str(script)).finish()
    assert code == 1
    assert "Unhandled exception in loop 'importer'" in output
    assert "RuntimeError: no such file" in output
    assert "ended with an unhandled error: importer" in output


def test_underway_run_stops_on_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "forever.py"
    script.write_text(
        textwrap.dedent(
            """
            import underway

            @underway.loop(seconds=0.05)
            async def beat() -> None:
                print("beat", flush=True)

            @beat.after_loop
            async def bye() -> None:
                print("bye", flush=True)

            beat.start()
            """
        )
    )
    child = Child("-m", "underway", "run", str(script))
    child.wait_for("beat")
    child.signal(signal.SIGTERM)
    code, output = child.finish()
    assert code == 0, output
    assert "bye" in output


def test_underway_run_reports_a_missing_script() -> None:
    code, output = Child("-m", "underway", "run", "no/such/script.py").finish()
    assert code == 2
    assert "does not exist" in output
