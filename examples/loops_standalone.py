"""Tutorial section 4: a loop in a plain script, without any bot or client.

``heartbeat.start()`` at the top level defers the start until ``underway.run()`` (or
``underway run examples/loops_standalone.py``) runs the event loop. Ctrl-C or SIGTERM stops
the loop gracefully: ``after_loop`` runs and the script exits normally.
"""

from __future__ import annotations

import underway
from underway import tasks


@tasks.loop(seconds=30)
async def heartbeat() -> None:
    print("30초마다 실행", flush=True)


@heartbeat.before_loop
async def before_heartbeat() -> None:
    print("시작합니다", flush=True)


@heartbeat.after_loop
async def after_heartbeat() -> None:
    print("정리 작업 완료", flush=True)


heartbeat.start()

if __name__ == "__main__":
    underway.run()
