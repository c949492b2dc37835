"""Every example of the loops tutorial runs on underway (examples/loops_*.py)."""

from __future__ import annotations

import asyncio
import runpy
import signal
from datetime import datetime, time
from typing import Any

import pytest

from tests.subprocess_helpers import ROOT, Child
from underway import Loop, VirtualClock
from underway.loop import registry

EXAMPLES = ROOT / "examples"


def _load(name: str) -> dict[str, Any]:
    # Loaded outside the event loop (sync fixtures run there), as a script would be: the
    # module's top-level start() calls are deferred, and dropped here so that each test
    # starts the loops itself, on a virtual clock.
    namespace = runpy.run_path(str(EXAMPLES / name), run_name=f"example_{name[:-3]}")
    registry.deferred.clear()
    return namespace


@pytest.fixture
def time_example() -> dict[str, Any]:
    return _load("loops_time_of_day.py")


@pytest.fixture
def errors_example() -> dict[str, Any]:
    return _load("loops_errors.py")


async def test_cog_example(capsys: pytest.CaptureFixture[str]) -> None:
    ns = _load("loops_cog.py")
    bot = ns["Bot"]()
    cog = ns["MyCog"](bot)
    printer: Loop[Any] = cog.printer
    printer.change_interval(seconds=0.001)  # the tutorial's 5 s, shortened for the test
    printer.start()
    await asyncio.sleep(0.05)
    assert cog.counter == 0  # before_loop waits for the bot to be ready
    bot.set_ready()
    task = printer.get_task()
    assert task is not None
    await asyncio.wait_for(task, 5)
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{n}번째 실행" for n in range(1, 11)] + ["루프가 완료되었습니다."]
    cog.cog_unload()  # cancelling a finished loop is harmless
    assert not printer.is_running()


async def test_time_of_day_example(time_example: dict[str, Any]) -> None:
    ns = time_example
    morning: Loop[Any] = ns["morning_job"]
    reminder: Loop[Any] = ns["daily_reminder"]
    assert reminder.time == [time(12, 0), time(18, 0)]
    start = datetime.combine(datetime.now().date(), time(8, 0), tzinfo=morning.timezone)
    clock = VirtualClock(start)
    morning.clock = reminder.clock = clock
    morning.start()
    reminder.start()
    await clock.advance(hours=11)
    morning.cancel()
    reminder.cancel()
    assert ns["some_channel"].sent == [
        "좋은 아침입니다!",
        "점심 시간 또는 퇴근 시간입니다!",
        "점심 시간 또는 퇴근 시간입니다!",
    ]
    await clock.advance(days=1)


async def test_error_handling_example(
    errors_example: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    ns = errors_example
    my_loop: Loop[Any] = ns["my_loop"]
    clock = VirtualClock()
    my_loop.clock = clock
    task = my_loop.start()
    assert task is not None
    await clock.advance(10)
    await asyncio.wait([task], timeout=1)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "1번째 호출",
        "3번째 호출: 간격을 0.5초로 변경",
        "4번째 호출",
        "루프에서 오류 발생: ValueError('unexpected data')",
    ]
    assert my_loop.failed()
    assert my_loop.coro.__globals__["calls"] == 5


@pytest.mark.parametrize(
    "command",
    [["examples/loops_standalone.py"], ["-m", "underway", "run", "examples/loops_standalone.py"]],
)
def test_standalone_example_runs_and_stops_on_ctrl_c(command: list[str]) -> None:
    child = Child(*command)
    child.wait_for("30초마다 실행")
    child.signal(signal.SIGINT)
    code, output = child.finish()
    assert code == 0, output
    assert output.splitlines()[:2] == ["시작합니다", "30초마다 실행"]
    assert "정리 작업 완료" in output
