"""Tutorial section 3: changing the interval and handling errors.

``my_loop`` polls a flaky service: a ``ConnectionError`` is retried (it was added with
``add_exception_type``), anything else reaches the error handler and ends the loop.

Run it with ``python examples/loops_errors.py`` or ``underway run examples/loops_errors.py``.
"""

from __future__ import annotations

import underway
from underway import tasks

calls = 0


@tasks.loop(seconds=1.0)
async def my_loop() -> None:
    global calls
    calls += 1
    if calls == 2:
        raise ConnectionError("the service is restarting")  # retried with backoff
    if calls == 3:
        my_loop.change_interval(seconds=0.5)  # 다음 반복부터 새 간격이 적용됩니다
        print(f"{calls}번째 호출: 간격을 0.5초로 변경")
        return
    if calls == 5:
        raise ValueError("unexpected data")  # not handled: the loop ends
    print(f"{calls}번째 호출")


@my_loop.error
async def my_loop_error_handler(error: BaseException) -> None:
    print(f"루프에서 오류 발생: {error!r}")


my_loop.add_exception_type(ConnectionError)  # 네트워크 오류가 발생해도 루프 계속
my_loop.start()

if __name__ == "__main__":
    underway.run()
