"""underway.run(): standalone loops, graceful shutdown on signals."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest

import underway
from tests.subprocess_helpers import Child
from underway import LoopError


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    return path


FOREVER = """
    import asyncio
    import underway

    @underway.loop(seconds=0.02)
    async def tick() -> None:
        print("tick", flush=True)
        await asyncio.sleep({body_seconds})

    @tick.after_loop
    async def after() -> None:
        print(f"after cancelled={{tick.is_being_cancelled()}}", flush=True)

    tick.start()
    underway.run(grace={grace})
    print("run returned", flush=True)
"""


def test_run_runs_started_loops_until_they_end(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        import underway

        @underway.loop(seconds=0.01, count=3)
        async def a() -> None:
            print("a", a.current_loop, flush=True)

        @underway.loop(seconds=0.01, count=2)
        async def b() -> None:
            print("b", b.current_loop, flush=True)

        a.start()
        b.start()
        underway.run()
        print("done", a.is_running(), b.is_running())
        """,
    )
    code, output = Child(str(script)).finish()
    assert code == 0, output
    lines = output.split()
    assert lines.count("a") == 3 and lines.count("b") == 2
    assert "done False False" in output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_loops_gracefully(tmp_path: Path, sig: signal.Signals) -> None:
    child = Child(str(_script(tmp_path, FOREVER.format(body_seconds=0, grace=30))))
    child.wait_for("tick")
    child.signal(sig)
    code, output = child.finish()
    assert code == 0, output
    assert "after cancelled=False" in output
    assert "run returned" in output
    assert "Traceback" not in output


def test_a_second_signal_cancels_at_once(tmp_path: Path) -> None:
    child = Child(str(_script(tmp_path, FOREVER.format(body_seconds=60, grace=60))))
    child.wait_for("tick")
    child.signal(signal.SIGTERM)
    child.wait_for("stopping 1 loop(s)")
    child.signal(signal.SIGTERM)
    code, output = child.finish(timeout=5)
    assert code == 0, output
    assert "after cancelled=True" in output
    assert "run returned" in output


def test_the_grace_period_bounds_a_graceful_stop(tmp_path: Path) -> None:
    child = Child(str(_script(tmp_path, FOREVER.format(body_seconds=60, grace=0.2))))
    child.wait_for("tick")
    child.signal(signal.SIGTERM)
    code, output = child.finish(timeout=5)
    assert code == 0, output
    assert "after cancelled=True" in output


def test_run_with_nothing_started_warns_and_returns(caplog: pytest.LogCaptureFixture) -> None:
    underway.run()
    assert any("no loop was started" in r.getMessage() for r in caplog.records)


async def test_run_inside_an_event_loop_says_what_to_do_instead() -> None:
    with pytest.raises(LoopError, match=r"await underway\.runner\.serve"):
        underway.run()


def test_serve_starts_deferred_loops_and_reports_them() -> None:
    import asyncio

    from underway.runner import serve

    runs: list[int] = []

    @underway.loop(seconds=0, count=2)
    async def a() -> None:
        runs.append(1)

    assert a.start() is None  # no event loop yet: deferred
    ran = asyncio.run(serve())
    assert ran == [a]
    assert runs == [1, 1]
    assert not a.is_running()
