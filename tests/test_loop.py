"""Behaviour of underway.loop: the discord.ext.tasks API and the decided differences."""

from __future__ import annotations

import asyncio
import itertools
import logging
from datetime import datetime, timedelta, timezone
from datetime import time as dt_time
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import underway
from underway import LoopError, VirtualClock, tasks
from underway.loop import BACKOFF_CAP, Loop

UTC = timezone.utc
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def _offsets(times: list[datetime], start: datetime = T0) -> list[float]:
    return [(t - start).total_seconds() for t in times]


async def _finish(lp: Loop[Any], timeout: float = 5.0) -> None:
    task = lp.get_task()
    assert task is not None
    await asyncio.wait_for(asyncio.shield(task), timeout)


# -- running, counting and ending ----------------------------------------------------------


async def test_interval_loop_runs_count_times_then_ends() -> None:
    calls: list[int] = []
    after: list[int] = []

    @underway.loop(seconds=0.01, count=3)
    async def ticker() -> None:
        calls.append(ticker.current_loop)

    @ticker.after_loop
    async def done() -> None:
        after.append(ticker.current_loop)

    task = ticker.start()
    assert task is not None and ticker.is_running()
    assert ticker.get_task() is task
    await _finish(ticker)
    assert calls == [0, 1, 2]
    assert after == [3]
    assert ticker.current_loop == 0
    assert not ticker.is_running()
    assert not ticker.failed()
    assert ticker.next_iteration is None


async def test_arguments_passed_to_start_reach_every_call() -> None:
    seen: list[tuple[int, str]] = []

    @underway.loop(seconds=0, count=2)
    async def worker(number: int, *, label: str) -> None:
        seen.append((number, label))

    worker.start(7, label="x")
    await _finish(worker)
    assert seen == [(7, "x"), (7, "x")]


async def test_first_interval_iteration_runs_at_once_and_targets_are_absolute() -> None:
    clock = VirtualClock(T0)
    starts: list[datetime] = []
    durations = iter([0.3, 0.9, 0.0, 0.5])

    @underway.loop(seconds=1, count=4, clock=clock)
    async def body() -> None:
        starts.append(clock.now())
        await clock.advance(next(durations))  # the body "takes" this long

    body.start()
    await clock.advance(10)
    assert _offsets(starts) == [0, 1, 2, 3]


async def test_next_iteration_reports_the_next_target() -> None:
    clock = VirtualClock(T0)

    @underway.loop(minutes=1, clock=clock)
    async def body() -> None:
        pass

    assert body.next_iteration is None
    body.start()
    await clock.advance(0)
    assert body.next_iteration == T0 + timedelta(minutes=1)
    await clock.advance(61)
    assert body.next_iteration == T0 + timedelta(minutes=2)
    body.cancel()
    await asyncio.sleep(0)
    assert body.next_iteration is None


async def test_real_clock_interval_keeps_pace() -> None:
    stamps: list[float] = []
    event_loop = asyncio.get_running_loop()

    @underway.loop(seconds=0.02, count=10)
    async def body() -> None:
        stamps.append(event_loop.time())
        await asyncio.sleep(0.01)

    body.start()
    await _finish(body)
    # Ten starts 20 ms apart take 180 ms; the 10 ms body must not add up to drift.
    assert 0.17 <= stamps[-1] - stamps[0] < 0.30


# -- overrun -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrun", "expected"),
    [("catch_up", [0, 3.5, 3.5, 3.5, 4, 5]), ("skip", [0, 3.5, 4, 5, 6, 7])],
)
async def test_overrun_policy_for_intervals(overrun: str, expected: list[float]) -> None:
    clock = VirtualClock(T0)
    starts: list[datetime] = []

    @underway.loop(seconds=1, count=6, overrun=overrun, clock=clock)  # type: ignore[arg-type]
    async def body() -> None:
        starts.append(clock.now())
        if len(starts) == 1:
            await clock.advance(3.5)

    body.start()
    await clock.advance(20)
    assert _offsets(starts) == expected


async def test_skip_coalesces_missed_times_of_day() -> None:
    clock = VirtualClock(T0)  # 08:00 UTC
    starts: list[datetime] = []
    times = [dt_time(9), dt_time(10), dt_time(11), dt_time(12)]

    @underway.loop(time=times, timezone="UTC", overrun="skip", count=3, clock=clock)
    async def body() -> None:
        starts.append(clock.now())
        if len(starts) == 1:
            await clock.advance(hours=2, minutes=30)  # overruns 10:00 and 11:00

    body.start()
    await clock.advance(hours=6)
    assert _offsets(starts) == [3600, 3600 * 3.5, 3600 * 4]


async def test_catch_up_runs_every_missed_time_of_day() -> None:
    clock = VirtualClock(T0)
    starts: list[datetime] = []

    @underway.loop(
        time=[dt_time(9), dt_time(10), dt_time(11)], timezone="UTC", count=3, clock=clock
    )
    async def body() -> None:
        starts.append(clock.now())
        if len(starts) == 1:
            await clock.advance(hours=2, minutes=30)

    body.start()
    await clock.advance(hours=6)
    assert _offsets(starts) == [3600, 3600 * 3.5, 3600 * 3.5]


# -- time of day, cron, time zones and DST --------------------------------------------------


async def _fire_times(
    lp: Loop[Any], clock: VirtualClock, span: timedelta, n: int
) -> list[datetime]:
    fired: list[datetime] = []
    original = lp.coro

    async def record(*args: Any) -> None:
        fired.append(clock.now())
        await original(*args)

    lp.coro = record
    lp.count = n
    lp.start()
    await clock.advance_to(clock.now() + span)
    await _finish(lp, timeout=1)
    return fired


async def _noop() -> None:
    pass


async def test_time_loop_runs_daily_at_the_given_time_in_its_zone() -> None:
    clock = VirtualClock(datetime(2026, 1, 5, 0, 0, tzinfo=UTC))
    lp = underway.loop(time=dt_time(9, 0), timezone="Asia/Seoul", clock=clock)(_noop)
    fired = await _fire_times(lp, clock, timedelta(days=3), 3)
    assert fired == [
        datetime(2026, 1, 5, 0, 0, tzinfo=UTC),  # 09:00 KST is midnight UTC
        datetime(2026, 1, 6, 0, 0, tzinfo=UTC),
        datetime(2026, 1, 7, 0, 0, tzinfo=UTC),
    ]


async def test_time_list_is_sorted_and_deduplicated() -> None:
    lp = underway.loop(time=[dt_time(18), dt_time(12), dt_time(12)], timezone="UTC")(_noop)
    assert lp.time == [dt_time(12), dt_time(18)]
    clock = VirtualClock(datetime(2026, 1, 5, 13, 0, tzinfo=UTC))
    lp.clock = clock
    fired = await _fire_times(lp, clock, timedelta(days=1), 2)
    assert [f.hour for f in fired] == [18, 12]


async def test_naive_time_means_the_local_zone() -> None:
    import tzlocal

    lp = underway.loop(time=dt_time(9, 0))(_noop)
    assert lp.timezone == tzlocal.get_localzone()
    start = datetime(2026, 6, 1, 0, 0, tzinfo=lp.timezone)
    clock = VirtualClock(start)
    lp.clock = clock
    fired = await _fire_times(lp, clock, timedelta(days=1), 1)
    assert fired[0].astimezone(lp.timezone).time() == dt_time(9, 0)


async def test_aware_time_uses_its_own_zone() -> None:
    clock = VirtualClock(datetime(2026, 1, 5, 0, 30, tzinfo=UTC))
    seoul_nine = dt_time(9, 0, tzinfo=ZoneInfo("Asia/Seoul"))
    lp = underway.loop(time=[seoul_nine, dt_time(1, 0)], timezone="UTC", clock=clock)(_noop)
    fired = await _fire_times(lp, clock, timedelta(days=1), 2)
    assert fired == [datetime(2026, 1, 5, 1, 0, tzinfo=UTC), datetime(2026, 1, 6, 0, 0, tzinfo=UTC)]


NEW_YORK = ZoneInfo("America/New_York")


async def test_time_in_a_dst_gap_fires_when_the_clock_jumps() -> None:
    clock = VirtualClock(datetime(2026, 3, 7, 12, 0, tzinfo=UTC))
    lp = underway.loop(time=dt_time(2, 30), timezone=NEW_YORK, clock=clock)(_noop)
    fired = await _fire_times(lp, clock, timedelta(days=3), 3)
    assert [f.astimezone(NEW_YORK).isoformat() for f in fired] == [
        "2026-03-08T03:00:00-04:00",  # 02:30 does not exist that night
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]


async def test_time_in_a_dst_fold_fires_once_at_its_first_occurrence() -> None:
    clock = VirtualClock(datetime(2026, 10, 31, 12, 0, tzinfo=UTC))
    lp = underway.loop(time=dt_time(1, 30), timezone=NEW_YORK, clock=clock)(_noop)
    fired = await _fire_times(lp, clock, timedelta(days=3), 2)
    assert [f.isoformat() for f in fired] == [
        "2026-11-01T05:30:00+00:00",  # 01:30 EDT, the first of the two 01:30s
        "2026-11-02T06:30:00+00:00",  # 01:30 EST the next day
    ]


async def test_cron_loop_follows_its_expression_in_its_zone() -> None:
    clock = VirtualClock(datetime(2026, 1, 5, 23, 58, tzinfo=UTC))  # a Monday, 08:58 KST Tue
    lp = underway.loop(cron="0 9 * * MON-FRI", timezone="Asia/Seoul", clock=clock)(_noop)
    assert lp.cron == "0 9 * * MON-FRI"
    assert lp.seconds is None and lp.time is None
    fired = await _fire_times(lp, clock, timedelta(days=7), 5)
    local = [f.astimezone(ZoneInfo("Asia/Seoul")) for f in fired]
    assert [d.strftime("%a %H:%M") for d in local] == [
        "Tue 09:00",
        "Wed 09:00",
        "Thu 09:00",
        "Fri 09:00",
        "Mon 09:00",
    ]


async def test_cron_every_five_minutes_across_the_autumn_fold() -> None:
    clock = VirtualClock(datetime(2026, 11, 1, 5, 50, tzinfo=UTC))  # 01:50 EDT
    lp = underway.loop(cron="*/5 * * * *", timezone=NEW_YORK, clock=clock)(_noop)
    fired = await _fire_times(lp, clock, timedelta(hours=2), 4)
    # An every-five-minutes job keeps its pace in real time through the repeated hour.
    assert [(f - fired[0]).total_seconds() for f in fired] == [0, 300, 600, 900]


async def test_cron_with_seconds_field() -> None:
    clock = VirtualClock(datetime(2026, 1, 5, 0, 0, 1, tzinfo=UTC))
    lp = underway.loop(cron="*/20 * * * * *", timezone="UTC", clock=clock)(_noop)
    fired = await _fire_times(lp, clock, timedelta(minutes=1), 3)
    assert [f.second for f in fired] == [20, 40, 0]


# -- change_interval -----------------------------------------------------------------------


async def test_change_interval_takes_effect_mid_sleep() -> None:
    clock = VirtualClock(T0)
    starts: list[datetime] = []

    @underway.loop(seconds=10, clock=clock)
    async def body() -> None:
        starts.append(clock.now())

    body.start()
    await clock.advance(2)
    body.change_interval(seconds=3)  # next = first run + 3 s, not + 10 s
    assert body.next_iteration == T0 + timedelta(seconds=3)
    assert body.seconds == 3.0
    await clock.advance(5)
    body.cancel()
    assert _offsets(starts) == [0, 3, 6]


async def test_change_interval_wakes_a_real_sleep() -> None:
    runs: list[float] = []
    event_loop = asyncio.get_running_loop()

    @underway.loop(seconds=30, count=2)
    async def body() -> None:
        runs.append(event_loop.time())
        if len(runs) == 1:
            body.change_interval(seconds=0.05)

    body.start()
    await _finish(body, timeout=2)
    assert len(runs) == 2 and runs[1] - runs[0] < 1


async def test_change_interval_switches_between_interval_time_and_cron() -> None:
    clock = VirtualClock(T0)  # 08:00 UTC
    starts: list[datetime] = []

    @underway.loop(hours=5, timezone="UTC", clock=clock)
    async def body() -> None:
        starts.append(clock.now())

    body.start()
    await clock.advance(60)
    body.change_interval(time=dt_time(9, 30))
    assert body.time == [dt_time(9, 30)] and body.hours is None
    assert body.next_iteration == T0.replace(hour=9, minute=30)
    await clock.advance(hours=2)  # 10:01
    body.change_interval(cron="0 */6 * * *")
    assert body.cron == "0 */6 * * *" and body.time is None
    assert body.next_iteration == T0.replace(hour=12, minute=0)
    await clock.advance(hours=3)
    body.change_interval(minutes=1)  # a switch of kind counts from now
    assert body.minutes == 1.0 and body.cron is None
    await clock.advance(30)
    body.cancel()
    assert [s.strftime("%H:%M") for s in starts] == ["08:00", "09:30", "12:00", "13:01"]


# -- stop, cancel, restart -----------------------------------------------------------------


async def test_stop_while_sleeping_ends_without_running_the_body_again() -> None:
    runs: list[int] = []
    after: list[bool] = []

    @underway.loop(seconds=30)
    async def body() -> None:
        runs.append(1)

    @body.after_loop
    async def cleanup() -> None:
        after.append(body.is_being_cancelled())

    body.start()
    await asyncio.sleep(0.02)
    body.stop()
    assert body.next_iteration is None
    await _finish(body, timeout=1)
    assert runs == [1]
    assert after == [False]
    task = body.get_task()
    assert task is not None and not task.cancelled()


async def test_stop_during_the_body_lets_it_finish() -> None:
    finished: list[str] = []

    @underway.loop(seconds=0)
    async def body() -> None:
        body.stop()
        await asyncio.sleep(0.01)
        finished.append("body")

    body.start()
    await _finish(body)
    assert finished == ["body"]


async def test_stop_in_before_loop_skips_every_iteration() -> None:
    runs: list[int] = []

    @underway.loop(seconds=0)
    async def body() -> None:
        runs.append(1)

    @body.before_loop
    async def before() -> None:
        body.stop()

    body.start()
    await _finish(body)
    assert runs == []


async def test_cancel_interrupts_the_body_and_after_loop_sees_it() -> None:
    seen: list[bool] = []

    @underway.loop(seconds=1)
    async def body() -> None:
        await asyncio.sleep(10)

    @body.after_loop
    async def after() -> None:
        seen.append(body.is_being_cancelled())

    task = body.start()
    assert task is not None
    await asyncio.sleep(0.01)
    body.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [True]
    assert not body.is_being_cancelled()
    assert not body.failed()


async def test_restart_cancels_and_starts_again() -> None:
    befores: list[int] = []

    @underway.loop(seconds=10)
    async def body(n: int) -> None:
        pass

    @body.before_loop
    async def before() -> None:
        befores.append(1)

    first = body.start(1)
    await asyncio.sleep(0.01)
    body.restart(2)
    await asyncio.sleep(0.05)
    assert first is not None and first.cancelled()
    second = body.get_task()
    assert second is not None and second is not first and body.is_running()
    assert befores == [1, 1]
    body.cancel()


async def test_restart_on_a_stopped_loop_starts_it() -> None:
    runs: list[int] = []

    @underway.loop(seconds=0, count=1)
    async def body() -> None:
        runs.append(1)

    body.restart()
    await _finish(body)
    body.restart()
    await _finish(body)
    assert runs == [1, 1]


async def test_starting_a_running_loop_raises() -> None:
    @underway.loop(seconds=10)
    async def body() -> None:
        pass

    body.start()
    with pytest.raises(RuntimeError, match="already running"):
        body.start()
    with pytest.raises(LoopError):
        body.start()
    body.cancel()


def test_start_without_an_event_loop_is_deferred() -> None:
    from underway.loop import registry

    @underway.loop(seconds=10)
    async def body() -> None:
        pass

    assert body.start() is None
    assert body in registry.deferred
    assert not body.is_running()
    with pytest.raises(LoopError, match="already"):
        body.start()
    body.stop()
    assert body not in registry.deferred


# -- errors --------------------------------------------------------------------------------


async def test_unhandled_exception_calls_error_hook_marks_failed_and_runs_after_loop() -> None:
    events: list[str] = []

    @underway.loop(seconds=0)
    async def body() -> None:
        events.append("body")
        raise ValueError("boom")

    @body.error
    async def on_error(exc: BaseException) -> None:
        events.append(f"error:{exc}")

    @body.after_loop
    async def after() -> None:
        events.append(f"after failed={body.failed()}")

    task = body.start()
    assert task is not None
    with pytest.raises(ValueError, match="boom"):
        await task
    assert events == ["body", "error:boom", "after failed=True"]
    assert body.failed()


async def test_default_error_hook_logs_with_traceback_and_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @underway.loop(seconds=0, name="sync-inventory")
    async def body() -> None:
        raise KeyError("sku")

    body.start()
    task = body.get_task()
    assert task is not None
    await asyncio.wait([task])
    records = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(records) == 1
    assert "sync-inventory" in records[0].getMessage()
    assert records[0].exc_info is not None and records[0].exc_info[0] is KeyError
    assert task.get_name() == "sync-inventory"


async def test_handled_exceptions_retry_with_capped_logged_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock(T0)
    attempts: list[datetime] = []

    @underway.loop(seconds=60, count=2, clock=clock)
    async def body() -> None:
        attempts.append(clock.now())
        if len(attempts) <= 3:
            raise (OSError if len(attempts) % 2 else TimeoutError)("network down")

    with caplog.at_level(logging.WARNING, logger="underway.loop"):
        body.start()
        await clock.advance(120)
        await _finish(body)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(attempts) == 5  # three failures, then two counted iterations
    assert timedelta(seconds=0.5) <= gaps[0] <= timedelta(seconds=1)
    assert timedelta(seconds=1) <= gaps[1] <= timedelta(seconds=2)
    assert timedelta(seconds=2) <= gaps[2] <= timedelta(seconds=4)
    # The retried tick keeps its place: the next one is 60 s after the first.
    assert attempts[4] == T0 + timedelta(seconds=60)
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 3 and all(r.exc_info for r in retries)
    assert body._backoff(30) <= BACKOFF_CAP


async def test_reconnect_false_turns_handled_exceptions_into_failures() -> None:
    @underway.loop(seconds=0, reconnect=False)
    async def body() -> None:
        raise OSError("disk")

    task = body.start()
    assert task is not None
    await asyncio.wait([task])
    assert body.failed()


async def test_exception_types_can_be_added_removed_and_cleared() -> None:
    clock = VirtualClock(T0)
    errors: list[type[BaseException]] = [ValueError]

    @underway.loop(seconds=1, count=1, clock=clock)
    async def body() -> None:
        if errors:
            raise errors.pop()()

    body.add_exception_type(ValueError)
    body.start()
    await clock.advance(5)
    await _finish(body)
    assert not body.failed()

    assert body.remove_exception_type(ValueError) is True
    assert body.remove_exception_type(ValueError) is False
    body.clear_exception_types()
    errors.append(OSError)
    task = body.start()
    assert task is not None
    await asyncio.wait([task])
    assert body.failed()
    with pytest.raises(TypeError, match="not an exception class"):
        body.add_exception_type("ValueError")  # type: ignore[arg-type]


# -- loops on classes ----------------------------------------------------------------------


class Counter:
    def __init__(self, name: str) -> None:
        self.name = name
        self.ticks = 0
        self.events: list[str] = []

    @tasks.loop(seconds=0, count=2)
    async def tick(self) -> None:
        self.ticks += 1

    @tick.before_loop
    async def before(self) -> None:
        self.events.append(f"before {self.name}")

    @tick.after_loop
    async def after(self) -> None:
        self.events.append(f"after {self.name}")


Counter.tick.add_exception_type(LookupError)


async def test_each_instance_gets_its_own_copy() -> None:
    a, b = Counter("a"), Counter("b")
    assert a.tick is a.tick
    assert a.tick is not b.tick
    assert Counter.tick is Counter.tick
    assert LookupError in a.tick._valid_exception  # class-level types carry over
    a.tick.start()
    await _finish(a.tick)
    assert (a.ticks, b.ticks) == (2, 0)
    assert a.events == ["before a", "after a"]
    assert not b.tick.is_running()
    await b.tick()  # __call__ runs the body once, with self
    assert b.ticks == 1


async def test_call_runs_the_function_directly() -> None:
    @underway.loop(seconds=10)
    async def double(x: int) -> int:
        return x * 2

    assert await double(21) == 42
    assert not double.is_running()


# -- properties and names ------------------------------------------------------------------


def test_interval_properties() -> None:
    lp = underway.loop(seconds=1.5, minutes=2, hours=1, timezone="Europe/Berlin")(_noop)
    assert (lp.seconds, lp.minutes, lp.hours) == (1.5, 2.0, 1.0)
    assert lp.time is None and lp.cron is None
    assert lp.timezone == ZoneInfo("Europe/Berlin")
    assert lp.count is None and lp.reconnect is True and lp.overrun == "catch_up"


async def test_default_task_name_mentions_the_function() -> None:
    lp = underway.loop(seconds=10)(_noop)
    task = lp.start()
    assert task is not None and "_noop" in task.get_name()
    lp.cancel()


def test_tasks_module_matches_discord_ext_tasks_names() -> None:
    assert tasks.loop is underway.loop
    assert tasks.Loop is underway.Loop
    assert sorted(tasks.__all__) == ["Loop", "loop"]


# -- bad input -----------------------------------------------------------------------------


def _sync() -> None:
    pass


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"seconds": "5"}, TypeError, "seconds must be a number"),
        ({"minutes": -1}, ValueError, "minutes must be zero or a positive"),
        ({"hours": float("nan")}, ValueError, "hours must be zero or a positive"),
        ({"time": []}, ValueError, "must not be an empty list"),
        ({"time": "09:00"}, TypeError, "time must be a datetime.time"),
        ({"time": [dt_time(9), "18:00"]}, TypeError, r"time\[1\] is a str"),
        ({"seconds": 5, "time": dt_time(9)}, TypeError, "Cannot mix time="),
        ({"minutes": 5, "cron": "* * * * *"}, TypeError, "Cannot mix cron="),
        ({"time": dt_time(9), "cron": "* * * * *"}, TypeError, "either time= or cron="),
        ({"cron": "every minute"}, ValueError, "Invalid cron expression"),
        ({"cron": "61 * * * *"}, ValueError, "Invalid cron expression"),
        ({"timezone": "Mars/Olympus"}, ValueError, "Unknown time zone"),
        ({"timezone": 9}, TypeError, "timezone must be"),
    ],
)
def test_bad_arguments_fail_at_the_decorator(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        underway.loop(**kwargs)(_noop)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"count": 0}, ValueError, "count must be greater than 0"),
        ({"count": "3"}, TypeError, "count must be an int"),
        ({"overrun": "drop"}, ValueError, "overrun must be 'catch_up'"),
        ({"reconnect": "yes"}, TypeError, "reconnect must be True or False"),
    ],
)
def test_bad_options_fail_when_the_decorator_is_applied(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        underway.loop(seconds=1, **kwargs)(_noop)


def test_decorating_a_plain_function_says_to_use_async_def() -> None:
    with pytest.raises(TypeError, match="must be an 'async def' function"):
        underway.loop(seconds=1)(_sync)  # type: ignore[type-var]
    lp = underway.loop(seconds=1)(_noop)
    for hook in (lp.before_loop, lp.after_loop, lp.error):
        with pytest.raises(TypeError, match="async def"):
            hook(_sync)  # type: ignore[type-var]


def test_change_interval_validates_like_the_decorator() -> None:
    lp = underway.loop(seconds=1)(_noop)
    with pytest.raises(TypeError, match="Cannot mix"):
        lp.change_interval(seconds=1, time=dt_time(9))
    with pytest.raises(ValueError, match="Invalid cron"):
        lp.change_interval(cron="nope")
    assert lp.seconds == 1.0


async def test_a_loop_that_is_always_due_still_lets_other_tasks_run() -> None:
    others = 0
    stop = asyncio.Event()

    async def other() -> None:
        nonlocal others
        while not stop.is_set():
            others += 1
            await asyncio.sleep(0)

    @underway.loop(seconds=0, count=1000)
    async def busy() -> None:
        pass  # never awaits

    neighbour = asyncio.create_task(other())
    busy.start()
    await _finish(busy)
    stop.set()
    await neighbour
    assert others >= 1000  # at least once per iteration of the busy loop
