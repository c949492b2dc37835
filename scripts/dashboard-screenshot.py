"""Take the README's screenshot of the dashboard: ``docs/images/dashboard.png``.

Seeds a SQLite store with an hour of made-up history (through a backend whose clock is set
back), runs two real workers on slow jobs that report progress, serves the dashboard with
uvicorn and photographs the overview in headless Chromium (Debian's package).

    .venv/bin/python scripts/dashboard-screenshot.py [--out docs/images/dashboard.png]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import uvicorn
from playwright.async_api import async_playwright

from underway import Underway, current_job
from underway.backends import backend_from_url
from underway.dashboard import create_dashboard
from underway.job import NewJob, Outcome, Release

UTC = timezone.utc
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TASKS = [
    ("emails.send_welcome", "default"),
    ("images.resize", "images"),
    ("reports.build", "reports"),
]


async def seed_history(url: str, now: datetime) -> None:
    """Store an hour of finished jobs, a failure spike 25 minutes ago, and some waiting ones."""
    fake_now = [now]
    backend = backend_from_url(url, clock=lambda: fake_now[0])
    await backend.open()
    rng = random.Random(7)
    for minute in range(60, 0, -1):
        volume = int(26 + 14 * math.sin(minute / 9) + rng.randint(0, 8))
        failure = 0.35 if 23 <= minute <= 26 else 0.03
        for _ in range(volume):
            fake_now[0] = now - timedelta(minutes=minute, seconds=-rng.uniform(0, 59))
            name, queue = rng.choices(TASKS, weights=[6, 3, 1])[0]
            await backend.enqueue(NewJob(name, b'{"args":[],"kwargs":{}}', queue=queue))
            (record,) = await backend.acquire([queue], "seed", 1, timedelta(seconds=30))
            fake_now[0] += timedelta(seconds=rng.uniform(0.05, 0.9))
            if rng.random() < failure:
                outcome = Outcome.failure("ConnectionError: SMTP server did not answer")
            else:
                outcome = Outcome.success(b"null")
            await backend.release("seed", [Release(record.lease, outcome)])
    fake_now[0] = now
    for i in range(14):
        name, queue = TASKS[i % 3]
        await backend.enqueue(NewJob(name, b'{"args":[],"kwargs":{}}', queue=queue))
    await backend.enqueue(
        NewJob(
            "reports.build",
            b'{"args":[],"kwargs":{}}',
            queue="reports",
            scheduled_at=now + timedelta(hours=1),
        )
    )
    await backend.close()


def build_app(url: str) -> Underway:
    uw = Underway(url)

    @uw.task(name="images.resize", queue="images")
    async def resize() -> None:
        for step in range(1, 301):
            await asyncio.sleep(0.1)
            current_job().progress(step / 300, f"frame {step} of 300")

    @uw.task(name="emails.send_welcome")
    async def send_welcome() -> None:
        await asyncio.sleep(600)

    @uw.task(name="reports.build", queue="reports")
    async def build() -> None:
        await asyncio.sleep(600)

    @uw.cron("0 9 * * MON-FRI", timezone="Asia/Seoul", name="reports.daily")
    async def daily() -> None:
        return None

    return uw


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/demo.db"
        await seed_history(url, datetime.now(UTC))
        uw = build_app(url)
        images = uw.worker(queues=["images"], concurrency=3, worker_id="web-1:4211:a1f3")
        other = uw.worker(queues=["default", "reports"], concurrency=2, worker_id="web-2:4187:9c2e")
        app = create_dashboard(uw, token="screenshot-token-0123456789")
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        serving = asyncio.create_task(server.serve())
        running = [asyncio.create_task(images.run()), asyncio.create_task(other.run())]
        while not server.started:  # noqa: ASYNC110 (uvicorn has no "started" event to await)
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        # Let the image jobs get under way at different points.
        await asyncio.sleep(6)
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            context = await browser.new_context(
                viewport={"width": 1280, "height": 1000},
                device_scale_factor=1,
                extra_http_headers={"Authorization": "Bearer screenshot-token-0123456789"},
            )
            page = await context.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.wait_for_timeout(2500)  # one live update
            out.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(out), full_page=True)
            await browser.close()
        for worker in (images, other):
            worker.kill()
        await asyncio.gather(*running)
        server.should_exit = True
        await serving
        await uw.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "dashboard.png")
    asyncio.run(main(parser.parse_args().out))
