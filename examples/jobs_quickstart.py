"""Durable jobs in one file: register tasks, enqueue them, run a worker, read results.

Run it with ``cd examples && python jobs_quickstart.py``. Jobs are stored in
``underway-quickstart.db`` in the current directory; they survive a crash of the program,
and a worker started later (``underway worker jobs_quickstart:uw``, from the same
directory) runs whatever is left.
"""

from __future__ import annotations

import asyncio
import time

import underway
from underway import Underway

uw = Underway("sqlite:///underway-quickstart.db")


@uw.task(retries=3, timeout=30)
async def send_welcome_email(to: str, *, name: str) -> str:
    await asyncio.sleep(0.1)  # pretend to talk to a mail server
    return f"sent to {name} <{to}>"


@uw.task
def resize_image(path: str, width: int) -> dict[str, int | str]:
    # A plain function: the worker runs it in a thread, so it never blocks the event loop.
    job = underway.current_job()
    for step in range(1, 5):
        time.sleep(0.05)
        job.progress(step / 4, f"pass {step} of 4")
    return {"path": path, "width": width}


async def main() -> None:
    worker = uw.worker(concurrency=4)
    running = asyncio.create_task(worker.run())
    await worker.started()

    email = await send_welcome_email.enqueue("kim@example.com", name="Kim")
    image = await resize_image.options(priority=5).enqueue("cat.png", width=640)
    later = await send_welcome_email.options(delay=0.5).enqueue("lee@example.com", name="Lee")

    print(await email.result(timeout=10))
    print(await image.result(timeout=10))
    print(await later.result(timeout=10))
    job = await uw.get_job(image.id)
    assert job is not None
    print(f"job {job.id}: {job.status}, progress {job.progress:.0%} ({job.progress_message})")

    worker.stop()
    await running
    await uw.close()


if __name__ == "__main__":
    asyncio.run(main())
