"""underway.BackgroundTasks and BackgroundRunner, called directly (no web framework)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
import starlette.background

import underway
from underway.background import BackgroundRunner, BackgroundTask, BackgroundTasks, task_name

LOGGER = "underway.background"
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class Recorder:
    """Tasks that record what ran, in which thread, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.threads: dict[str, int] = {}

    def sync(self, name: str) -> None:
        self.threads[name] = threading.get_ident()
        self.events.append(name)

    async def coro(self, name: str) -> None:
        await asyncio.sleep(0)
        self.threads[name] = threading.get_ident()
        self.events.append(name)

    def fail(self, name: str) -> None:
        self.events.append(name)
        raise ValueError(f"{name} went wrong")

    async def afail(self, name: str) -> None:
        self.events.append(name)
        raise KeyError(name)


def failure_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]


# --- the API -------------------------------------------------------------------------------


def test_is_starlettes_background_tasks() -> None:
    tasks = BackgroundTasks()
    assert isinstance(tasks, starlette.background.BackgroundTasks)
    assert isinstance(BackgroundTask(print), starlette.background.BackgroundTask)
    assert underway.BackgroundTasks is BackgroundTasks


def test_add_task_records_the_call() -> None:
    tasks = BackgroundTasks()
    tasks.add_task(print, "a", sep="-")
    [task] = tasks.tasks
    assert (task.func, task.args, task.kwargs, task.is_async) == (
        print,
        ("a",),
        {"sep": "-"},
        False,
    )


@pytest.mark.parametrize("bad", [None, "write_log", 3])
def test_add_task_refuses_what_is_not_callable(bad: Any) -> None:
    tasks = BackgroundTasks()
    with pytest.raises(TypeError, match=r"add_task\(\) needs the function") as info:
        tasks.add_task(bad)
    assert repr(bad) in str(info.value)
    assert type(bad).__name__ in str(info.value)
    assert tasks.tasks == []


async def test_async_detection_sees_through_partials_and_callable_objects() -> None:
    class Call:
        async def __call__(self) -> None:
            pass

    async def coro(x: int) -> None:
        pass

    tasks = BackgroundTasks()
    tasks.add_task(functools.partial(coro, 1))
    tasks.add_task(Call())
    tasks.add_task(functools.partial(print, 1))
    assert [t.is_async for t in tasks.tasks] == [True, True, False]


def test_task_names() -> None:
    class Mailer:
        def send(self) -> None:
            pass

        def __call__(self) -> None:
            pass

    assert task_name(Recorder.sync) == f"{__name__}.Recorder.sync"
    assert task_name(functools.partial(Recorder().sync, "x")) == f"{__name__}.Recorder.sync"
    assert task_name(Mailer().send).endswith("test_task_names.<locals>.Mailer.send")
    assert task_name(Mailer()).endswith("test_task_names.<locals>.Mailer")
    assert task_name(print) == "print"


# --- without a runner: inside the request, as Starlette runs them ---------------------------


async def test_order_threads_and_failures_without_runner(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    tasks = BackgroundTasks()
    tasks.add_task(rec.sync, "s1")
    tasks.add_task(rec.fail, "boom")
    tasks.add_task(rec.sync, "s2")
    tasks.add_task(rec.coro, "a1")
    tasks.add_task(rec.afail, "aboom")
    tasks.add_task(rec.sync, "s3")
    await tasks()
    assert rec.events == ["s1", "boom", "s2", "a1", "aboom", "s3"]
    loop_thread = threading.get_ident()
    assert rec.threads["a1"] == loop_thread
    assert loop_thread not in {rec.threads["s1"], rec.threads["s2"], rec.threads["s3"]}
    records = failure_records(caplog)
    assert [r.getMessage() for r in records] == [
        f"After-response task {__name__}.Recorder.fail failed; the tasks after it still run.",
        f"After-response task {__name__}.Recorder.afail failed; the tasks after it still run.",
    ]
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], ValueError)
    assert records[1].exc_info is not None
    assert isinstance(records[1].exc_info[1], KeyError)


async def test_single_task_and_starlette_tasks_are_accepted() -> None:
    rec = Recorder()
    await BackgroundTask(rec.sync, "one")()
    await BackgroundTasks([starlette.background.BackgroundTask(rec.coro, "two")])()
    assert rec.events == ["one", "two"]


async def test_cancelled_request_names_what_did_not_run(caplog: pytest.LogCaptureFixture) -> None:
    # What a server's graceful-shutdown timeout does to a request still running its tasks.
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(30)

    rec = Recorder()
    tasks = BackgroundTasks()
    tasks.add_task(rec.sync, "first")
    tasks.add_task(slow)
    tasks.add_task(rec.sync, "never")
    request = asyncio.create_task(tasks())
    await started.wait()
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    assert rec.events == ["first"]
    [record] = failure_records(caplog)
    assert record.getMessage() == (
        "2 after-response task(s) did not finish because they were interrupted "
        f"(CancelledError): {__name__}.test_cancelled_request_names_what_did_not_run"
        f".<locals>.slow (running), {__name__}.Recorder.sync (not started)."
    )


async def test_context_variables_reach_every_task() -> None:
    seen: list[str] = []
    tasks = BackgroundTasks()
    tasks.add_task(lambda: seen.append(request_id.get()))

    async def coro() -> None:
        seen.append(request_id.get())

    tasks.add_task(coro)
    request_id.set("req-1")
    await tasks()
    async with BackgroundRunner() as runner:
        token = runner.bind()
        request_id.set("req-2")
        await tasks()
        BackgroundRunner.unbind(token)
        await runner.wait_idle()
    assert seen == ["req-1", "req-1", "req-2", "req-2"]


# --- with a runner ----------------------------------------------------------------------------


async def test_runner_keeps_order_across_threads(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    async with BackgroundRunner() as runner:
        token = runner.bind()
        tasks = BackgroundTasks()
        for name in ("s1", "s2"):
            tasks.add_task(rec.sync, name)
        tasks.add_task(rec.coro, "a1")
        tasks.add_task(rec.fail, "boom")
        tasks.add_task(rec.sync, "s3")
        tasks.add_task(rec.afail, "aboom")
        tasks.add_task(rec.sync, "s4")
        tasks.add_task(rec.sync, "s5")
        await tasks()
        BackgroundRunner.unbind(token)
        await runner.wait_idle()
    assert rec.events == ["s1", "s2", "a1", "boom", "s3", "aboom", "s4", "s5"]
    loop_thread = threading.get_ident()
    assert rec.threads["a1"] == loop_thread
    assert loop_thread not in {rec.threads[n] for n in ("s1", "s2", "s3", "s4", "s5")}
    assert len(failure_records(caplog)) == 2


async def test_runner_sends_consecutive_plain_functions_in_one_job() -> None:
    rec = Recorder()
    async with BackgroundRunner() as runner:
        token = runner.bind()
        tasks = BackgroundTasks()
        for name in ("s1", "s2", "s3"):
            tasks.add_task(rec.sync, name)
        tasks.add_task(rec.coro, "a")
        for name in ("s4", "s5"):
            tasks.add_task(rec.sync, name)
        await tasks()
        BackgroundRunner.unbind(token)
        await runner.wait_idle()
        workers = runner._workers
        assert workers is not None
        assert workers.started == 2  # one trip to a thread per stretch of plain functions
    assert rec.events == ["s1", "s2", "s3", "a", "s4", "s5"]


async def test_many_responses_share_few_threads() -> None:
    rec = Recorder()
    async with BackgroundRunner(max_threads=4) as runner:
        token = runner.bind()

        async def respond(i: int) -> None:
            tasks = BackgroundTasks()
            tasks.add_task(rec.sync, f"{i}a")
            tasks.add_task(rec.sync, f"{i}b")
            await tasks()

        await asyncio.gather(*(respond(i) for i in range(200)))
        BackgroundRunner.unbind(token)
        await runner.wait_idle()
        workers = runner._workers
        assert workers is not None
        assert 1 <= len(workers.threads) <= 4
    assert len(rec.events) == 400
    for i in range(200):
        assert rec.events.index(f"{i}a") < rec.events.index(f"{i}b")


async def test_slow_function_does_not_hold_up_other_responses() -> None:
    release = threading.Event()
    done = threading.Event()
    async with BackgroundRunner() as runner:
        token = runner.bind()
        slow = BackgroundTasks()
        slow.add_task(release.wait, 10)
        await slow()
        quick = BackgroundTasks()
        quick.add_task(done.set)
        await quick()
        BackgroundRunner.unbind(token)
        # The only thread is stuck in release.wait(); the runner starts another one.
        assert await asyncio.to_thread(done.wait, 5)
        assert not release.is_set()
        release.set()


async def test_drain_waits_for_unfinished_tasks(caplog: pytest.LogCaptureFixture) -> None:
    finished: list[str] = []
    async with BackgroundRunner(grace=5) as runner:
        token = runner.bind()
        tasks = BackgroundTasks()
        tasks.add_task(time.sleep, 0.2)
        tasks.add_task(finished.append, "after the sleep")
        await tasks()
        BackgroundRunner.unbind(token)
        assert runner.busy()
        assert await runner.drain() == []
    assert finished == ["after the sleep"]
    assert not runner.busy()
    assert failure_records(caplog) == []


async def test_drain_past_grace_names_plain_functions(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    inside = threading.Event()
    ran: list[str] = []

    def blocked() -> None:
        inside.set()
        release.wait(10)

    runner = BackgroundRunner(grace=timedelta(milliseconds=50))
    async with runner:
        token = runner.bind()
        tasks = BackgroundTasks()
        tasks.add_task(ran.append, "first")
        tasks.add_task(blocked)
        tasks.add_task(ran.append, "dropped")
        await tasks()
        BackgroundRunner.unbind(token)
        assert await asyncio.to_thread(inside.wait, 5)
        started = time.monotonic()
        unfinished = await runner.drain()
        assert time.monotonic() - started < 2
    assert unfinished == [f"{__name__}.{blocked.__qualname__}", "list.append"]
    [record] = failure_records(caplog)
    message = record.getMessage()
    assert message.startswith("2 after-response task(s) did not finish because the application")
    assert "grace period of 0.05 s ran out" in message
    assert message.endswith(
        f": {__name__}.{blocked.__qualname__} (running), list.append (not started)."
    )
    assert record.__dict__["underway_unfinished"] == unfinished
    release.set()
    await asyncio.sleep(0.05)  # the thread returns from blocked() and starts nothing more
    assert ran == ["first"]


async def test_drain_past_grace_cancels_coroutines(caplog: pytest.LogCaptureFixture) -> None:
    started = asyncio.Event()
    ran: list[str] = []

    async def hangs() -> None:
        started.set()
        await asyncio.sleep(30)

    async with BackgroundRunner(grace=0.05) as runner:
        token = runner.bind()
        tasks = BackgroundTasks()
        tasks.add_task(hangs)
        tasks.add_task(ran.append, "never")
        request = asyncio.create_task(tasks())  # the request that sent the response
        BackgroundRunner.unbind(token)
        await started.wait()
        assert await runner.drain() == [f"{__name__}.{hangs.__qualname__}", "list.append"]
    assert request.cancelled()
    assert ran == []
    [record] = failure_records(caplog)  # named once, by the drain, not again by the request
    assert "hangs (running), list.append (not started)." in record.getMessage()


async def test_after_drain_responses_run_their_own_tasks() -> None:
    ran: list[str] = []
    async with BackgroundRunner() as runner:
        token = runner.bind()
    await BackgroundTasks([BackgroundTask(ran.append, "still runs")])()
    BackgroundRunner.unbind(token)
    assert ran == ["still runs"]
    assert await runner.drain() == []


async def test_runner_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="grace must be 0 or more"):
        BackgroundRunner(grace=-1)
    with pytest.raises(TypeError, match="grace must be a number of seconds or a timedelta"):
        BackgroundRunner(grace="30")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_threads must be 1 or more"):
        BackgroundRunner(max_threads=0)
    with pytest.raises(TypeError, match="max_threads must be an int"):
        BackgroundRunner(max_threads=2.5)  # type: ignore[arg-type]
    runner = BackgroundRunner(grace=timedelta(seconds=2))
    assert runner.grace == 2.0
    runner.start()
    with pytest.raises(RuntimeError, match="started before"):
        runner.start()
    assert await runner.drain() == []


def test_works_without_starlette() -> None:
    # underway does not depend on Starlette or anyio; without them the same class works.
    code = """
import asyncio, sys
sys.modules["starlette"] = None
sys.modules["anyio"] = None
import underway
ran = []
tasks = underway.BackgroundTasks()
tasks.add_task(ran.append, "sync")
async def coro():
    ran.append("async")
tasks.add_task(coro)
asyncio.run(tasks())
assert type(tasks).__mro__[1].__module__ == "underway.background", type(tasks).__mro__
print(ran)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "['sync', 'async']"
