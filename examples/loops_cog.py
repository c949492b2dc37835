"""Tutorial section 1: a loop inside a class (a discord.py "Cog"), without Discord.

The tutorial's ``before_loop`` awaits ``bot.wait_until_ready()``; here a small ``Bot``
stands in for the Discord client and becomes ready after a moment. Only the import
changed: ``from underway import tasks`` instead of ``from discord.ext import tasks``.

Run it with ``python examples/loops_cog.py`` (ten iterations, five seconds apart).
"""

from __future__ import annotations

import asyncio

from underway import tasks


class Bot:
    """Stands in for discord.py's client: something that becomes ready later."""

    def __init__(self) -> None:
        self._ready = asyncio.Event()

    def set_ready(self) -> None:
        self._ready.set()

    async def wait_until_ready(self) -> None:
        await self._ready.wait()


class MyCog:
    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self.counter = 0

    @tasks.loop(seconds=5.0, count=10)
    async def printer(self) -> None:
        self.counter += 1
        print(f"{self.counter}번째 실행")

    @printer.before_loop
    async def before_printer(self) -> None:
        await self.bot.wait_until_ready()  # 봇이 준비될 때까지 대기

    @printer.after_loop
    async def after_printer(self) -> None:
        print("루프가 완료되었습니다.")

    def cog_unload(self) -> None:
        self.printer.cancel()  # 코그 언로드 시 루프 종료


async def main() -> None:
    bot = Bot()
    cog = MyCog(bot)
    cog.printer.start()  # 루프 시작
    await asyncio.sleep(0.1)
    bot.set_ready()
    task = cog.printer.get_task()
    assert task is not None
    await task


if __name__ == "__main__":
    asyncio.run(main())
