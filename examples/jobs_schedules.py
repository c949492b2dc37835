"""Durable schedules: the tutorial's "use Celery Beat or APScheduler" cases, on underway.

Each tick is enqueued exactly once however many workers run, and ticks missed while no
worker ran are coalesced into one run (``misfire="once"``, the default).

Run a worker for it (run it twice, in two terminals, and each tick still runs once)::

    cd examples && underway worker jobs_schedules:uw
"""

from __future__ import annotations

import datetime as dt

from underway import Underway

uw = Underway("sqlite:///underway-schedules.db")


@uw.loop(seconds=10)
async def refresh_exchange_rates() -> None:
    print("refreshing exchange rates", flush=True)


@uw.cron("0 9 * * MON-FRI", timezone="Asia/Seoul")
async def morning_report() -> None:
    print("sending the morning report", flush=True)


@uw.loop(time=[dt.time(12, 0), dt.time(18, 0)], misfire="skip")
def daily_cleanup() -> None:
    print("cleaning up", flush=True)
