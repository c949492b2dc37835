"""Triggers: when a periodic function is due.

A trigger turns "every 5 seconds", "at 09:00 and 18:00" or "*/5 * * * *" into absolute,
aware instants. Loops (and, later, durable schedules) sleep until those instants, so the
time a body takes never makes the schedule drift.

Daylight-saving time is handled the way Debian's cron does it, for time lists and cron
expressions alike:

* a wall-clock time that does not exist (the clock jumps from 02:00 to 03:00) fires at
  the moment of the jump;
* a wall-clock time that happens twice (the clock goes back from 03:00 to 02:00) fires
  once, at its first occurrence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tzlocal
from cronsim import CronSim, CronSimError

__all__ = [
    "CronTrigger",
    "IntervalTrigger",
    "TimesTrigger",
    "Trigger",
    "local_timezone",
    "make_trigger",
    "resolve_timezone",
    "resolve_wall_time",
]

UTC = timezone.utc


def local_timezone() -> tzinfo:
    """Return the system's local time zone as an IANA zone (so DST rules are known)."""
    return tzlocal.get_localzone()


def resolve_timezone(value: tzinfo | str | None) -> tzinfo:
    """Turn a ``timezone=`` argument into a tzinfo.

    Args:
        value: A tzinfo (such as a ``ZoneInfo``), an IANA name such as ``"Asia/Seoul"``, or
            ``None`` for the system's local zone.

    Raises:
        TypeError: ``value`` is of another type.
        ValueError: ``value`` names no known time zone.
    """
    if value is None:
        return local_timezone()
    if isinstance(value, tzinfo):
        return value
    if isinstance(value, str):
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"Unknown time zone {value!r}: pass an IANA name such as 'Asia/Seoul' or "
                "'Europe/Berlin', or a zoneinfo.ZoneInfo."
            ) from exc
    raise TypeError(
        f"timezone must be a zoneinfo.ZoneInfo, another tzinfo or an IANA name such as "
        f"'Asia/Seoul', not {type(value).__name__}."
    )


def _exists(wall: datetime, zone: tzinfo) -> bool:
    aware = wall.replace(tzinfo=zone, fold=0)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall


def resolve_wall_time(wall: datetime, zone: tzinfo) -> datetime:
    """Return the instant (aware, UTC) at which the naive wall-clock time ``wall`` fires.

    A time inside a DST gap fires when the clock jumps over it; a time inside a DST fold
    fires at its first occurrence.
    """
    if _exists(wall, zone):
        return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    # Inside a gap: fold=1 reads the wall time with the offset after the jump, which lands
    # before the jump; fold=0 uses the offset before it, which lands after. The jump lies
    # between; find it to the second.
    low = math.floor(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = math.ceil(wall.replace(tzinfo=zone, fold=0).timestamp())
    if low > high:
        low, high = high, low
    after = datetime.fromtimestamp(high, UTC).astimezone(zone).utcoffset()
    while high - low > 1:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(zone).utcoffset() == after:
            high = mid
        else:
            low = mid
    return datetime.fromtimestamp(high, UTC)


class Trigger:
    """When a periodic function is due: a sequence of aware instants."""

    __slots__ = ()

    def first(self, now: datetime) -> datetime:
        """Return the first instant due at or after starting at ``now``."""
        raise NotImplementedError

    def next_after(self, previous: datetime) -> datetime:
        """Return the first instant strictly after ``previous``."""
        raise NotImplementedError

    def latest_due(self, previous: datetime, now: datetime) -> datetime:
        """Return the one instant that stands for every instant missed in (previous, now].

        Used when missed runs are coalesced: the result is at most ``now`` and the instant
        after it (``next_after``) lies in the future.
        """
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class IntervalTrigger(Trigger):
    """Every ``seconds`` seconds, counted from the first run.

    With ``aligned=True`` the instants are whole multiples of ``seconds`` since the Unix
    epoch instead, so that separate processes agree on them (durable schedules).
    """

    seconds: float
    aligned: bool = False

    def first(self, now: datetime) -> datetime:
        if not self.aligned or self.seconds <= 0:
            return now
        steps = math.ceil(now.timestamp() / self.seconds)
        return datetime.fromtimestamp(steps * self.seconds, UTC)

    def next_after(self, previous: datetime) -> datetime:
        return previous + timedelta(seconds=self.seconds)

    def latest_due(self, previous: datetime, now: datetime) -> datetime:
        if self.seconds <= 0:
            return now
        missed = math.floor((now - previous).total_seconds() / self.seconds)
        return previous + timedelta(seconds=self.seconds * max(missed, 1))


@dataclass(frozen=True, slots=True)
class TimesTrigger(Trigger):
    """At fixed times of day. A naive time means ``zone``; an aware time its own zone."""

    times: tuple[time, ...]
    zone: tzinfo

    def first(self, now: datetime) -> datetime:
        # A loop started exactly at one of its times runs it, rather than waiting a day.
        return self.next_after(now - timedelta(microseconds=1))

    def next_after(self, previous: datetime) -> datetime:
        return min(self._next_for(t, previous) for t in self.times)

    def latest_due(self, previous: datetime, now: datetime) -> datetime:
        return now

    def _next_for(self, t: time, previous: datetime) -> datetime:
        zone = t.tzinfo if t.tzinfo is not None else self.zone
        day: date = previous.astimezone(zone).date() - timedelta(days=1)
        wall_time = t.replace(tzinfo=None)
        while True:
            when = resolve_wall_time(datetime.combine(day, wall_time), zone)
            if when > previous:
                return when
            day += timedelta(days=1)


@dataclass(frozen=True, slots=True)
class CronTrigger(Trigger):
    """A cron expression (5 fields, or 6 with seconds first), read in ``zone``."""

    expression: str
    zone: tzinfo

    def __post_init__(self) -> None:
        validate_cron(self.expression)

    def first(self, now: datetime) -> datetime:
        return self.next_after(now - timedelta(microseconds=1))

    def next_after(self, previous: datetime) -> datetime:
        start = previous.astimezone(self.zone)
        return next(CronSim(self.expression, start)).astimezone(UTC)

    def latest_due(self, previous: datetime, now: datetime) -> datetime:
        return now


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of {name}, not {type(value).__name__}.")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be zero or a positive number, not {value!r}.")
    return float(value)


def make_trigger(
    seconds: float,
    minutes: float,
    hours: float,
    time: time | Sequence[time] | None,
    cron: str | None,
    zone: tzinfo,
    *,
    aligned: bool = False,
) -> Trigger:
    """Build the trigger that ``loop()``'s scheduling arguments describe.

    Raises:
        TypeError, ValueError: the arguments are invalid or mix kinds; the message says
            what to pass instead.
    """
    values = [
        _check_number(n, v)
        for n, v in (("seconds", seconds), ("minutes", minutes), ("hours", hours))
    ]
    interval = any(values)
    if time is not None and cron is not None:
        raise TypeError("Pass either time= or cron=, not both.")
    if (time is not None or cron is not None) and interval:
        which = "time=" if time is not None else "cron="
        raise TypeError(
            f"Cannot mix {which} with seconds=, minutes= or hours=: a loop runs either at an "
            "interval or at fixed times. Pass one of the two."
        )
    if time is not None:
        return TimesTrigger(normalise_times(time), zone)
    if cron is not None:
        return CronTrigger(cron, zone)
    return IntervalTrigger(values[0] + values[1] * 60.0 + values[2] * 3600.0, aligned)


def validate_cron(expression: str) -> None:
    """Raise ``ValueError`` with a helpful message if ``expression`` is not valid cron."""
    if not isinstance(expression, str):
        raise TypeError(
            f"cron must be a string such as '*/5 * * * *', not {type(expression).__name__}."
        )
    try:
        CronSim(expression, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ValueError(
            f"Invalid cron expression {expression!r}: {exc}. Use five fields "
            "'minute hour day-of-month month day-of-week', for example '*/5 * * * *' "
            "or '0 9 * * MON-FRI' (a sixth, leading field gives seconds)."
        ) from exc


def normalise_times(value: time | Sequence[time]) -> tuple[time, ...]:
    """Check a ``time=`` argument and return its times sorted and without duplicates.

    Raises:
        TypeError: ``value`` is neither a ``datetime.time`` nor a sequence of them.
        ValueError: the sequence is empty.
    """
    if isinstance(value, time):
        return (value,)
    candidate: object = value
    if isinstance(candidate, (str, bytes)) or not isinstance(candidate, Sequence):
        raise TypeError(
            "time must be a datetime.time or a list of them, for example "
            f"time=datetime.time(9, 0), not {type(value).__name__}."
        )
    if not value:
        raise ValueError(
            "time must not be an empty list: pass at least one datetime.time, for example "
            "time=[datetime.time(12, 0), datetime.time(18, 0)]."
        )
    for index, item in enumerate(value):
        if not isinstance(item, time):
            raise TypeError(
                f"time[{index}] is a {type(item).__name__}, not a datetime.time; pass "
                "times such as datetime.time(9, 30)."
            )
    unique = {(t.replace(tzinfo=None), _tz_key(t)): t for t in value}
    return tuple(sorted(unique.values(), key=lambda t: (t.replace(tzinfo=None), _tz_key(t))))


def _tz_key(t: time) -> str:
    return "" if t.tzinfo is None else str(t.tzinfo)
