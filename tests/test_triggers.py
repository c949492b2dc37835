"""Triggers: absolute instants for intervals, times of day and cron, across DST."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from underway.triggers import (
    CronTrigger,
    IntervalTrigger,
    TimesTrigger,
    normalise_times,
    resolve_timezone,
    resolve_wall_time,
)

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_interval_counts_from_the_previous_instant() -> None:
    trigger = IntervalTrigger(2.5)
    assert trigger.first(T0) == T0
    assert trigger.next_after(T0) == T0 + timedelta(seconds=2.5)


def test_interval_latest_due_stays_on_the_grid() -> None:
    trigger = IntervalTrigger(10)
    assert trigger.latest_due(T0, T0 + timedelta(seconds=35)) == T0 + timedelta(seconds=30)
    assert trigger.latest_due(T0, T0 + timedelta(seconds=10)) == T0 + timedelta(seconds=10)
    assert IntervalTrigger(0).latest_due(T0, T0 + timedelta(seconds=3)) == T0 + timedelta(seconds=3)


def test_times_trigger_starting_exactly_on_a_time_runs_it() -> None:
    trigger = TimesTrigger((time(9),), UTC)
    nine = T0.replace(hour=9)
    assert trigger.first(nine) == nine
    assert trigger.next_after(nine) == nine + timedelta(days=1)


def test_wall_times_resolve_across_dst_in_berlin() -> None:
    # 2026-03-29: 02:00 -> 03:00 CEST; 2026-10-25: 03:00 -> 02:00 CET.
    gap = resolve_wall_time(datetime(2026, 3, 29, 2, 30), BERLIN)
    assert gap == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST, the jump
    fold = resolve_wall_time(datetime(2026, 10, 25, 2, 30), BERLIN)
    assert fold == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, first of two
    plain = resolve_wall_time(datetime(2026, 7, 1, 12, 0), BERLIN)
    assert plain == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)


def test_fixed_offset_zones_have_no_dst() -> None:
    plus9 = timezone(timedelta(hours=9))
    assert resolve_wall_time(datetime(2026, 3, 29, 2, 30), plus9) == datetime(
        2026, 3, 28, 17, 30, tzinfo=UTC
    )


def test_cron_trigger_returns_aware_utc_strictly_after() -> None:
    trigger = CronTrigger("0 * * * *", BERLIN)
    first = trigger.first(T0)
    assert first == T0 and first.tzinfo is UTC
    assert trigger.next_after(first) == T0 + timedelta(hours=1)


def test_normalise_times_sorts_and_deduplicates() -> None:
    seoul = ZoneInfo("Asia/Seoul")
    got = normalise_times([time(18), time(9, tzinfo=seoul), time(9), time(18)])
    assert got == (time(9), time(9, tzinfo=seoul), time(18))
    assert normalise_times(time(7)) == (time(7),)


def test_resolve_timezone() -> None:
    assert resolve_timezone("Asia/Seoul") == ZoneInfo("Asia/Seoul")
    assert resolve_timezone(UTC) is UTC
    with pytest.raises(ValueError, match="Unknown time zone 'Nowhere/City'"):
        resolve_timezone("Nowhere/City")
