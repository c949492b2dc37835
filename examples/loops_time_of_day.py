"""Tutorial section 2: loops that run at fixed times of day.

A naive ``datetime.time`` is read in the system's local time zone, as the tutorial says
(pass ``timezone="Asia/Seoul"`` to pin a zone). ``some_channel`` stands in for a Discord
channel: it prints what it is sent.

Run it with ``underway run examples/loops_time_of_day.py``; it waits for 09:00, 12:00 and
18:00 until you press Ctrl-C.
"""

from __future__ import annotations

import datetime as dt

import underway
from underway import tasks


class Channel:
    """Stands in for a Discord channel."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: str) -> None:
        self.sent.append(message)
        print(message)


some_channel = Channel()


@tasks.loop(time=dt.time(9, 0, 0))  # 매일 오전 9시 실행
async def morning_job() -> None:
    await some_channel.send("좋은 아침입니다!")


@tasks.loop(time=[dt.time(12, 0), dt.time(18, 0)])  # 정오와 오후 6시 두 번 실행
async def daily_reminder() -> None:
    await some_channel.send("점심 시간 또는 퇴근 시간입니다!")


morning_job.start()
daily_reminder.start()

if __name__ == "__main__":
    underway.run()
