"""Transactional enqueue: a job exists if and only if the caller's transaction commits.

Needs a PostgreSQL server and ``pip install 'underway[postgres]'``. Run::

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test python postgres_transactional_enqueue.py

It places two orders on the application's own asyncpg connection; each enqueues its receipt
job in the same transaction. The first commits, so its job exists and a worker runs it; the
second fails after enqueueing, so its transaction rolls back and leaves no order and no job.
``UNDERWAY_URL`` (default: ``DATABASE_URL``) says where underway keeps its tables.
"""

from __future__ import annotations

import asyncio
import os

import asyncpg

from underway import Underway

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
uw = Underway(os.environ.get("UNDERWAY_URL", DATABASE_URL))


@uw.task
async def send_receipt(order_id: int) -> str:
    return f"receipt for order {order_id}"


async def place_order(conn: asyncpg.Connection, order_id: int, *, fail: bool = False) -> str:
    """Store an order and its receipt job atomically; return the job's id."""
    async with conn.transaction():
        await conn.execute("INSERT INTO orders (id) VALUES ($1)", order_id)
        job = await send_receipt.enqueue_in(conn, order_id)  # type-checked like enqueue()
        if fail:
            raise RuntimeError("the payment was declined")
    return job.id


async def main() -> None:
    async with uw:  # opens the store: creates or migrates underway's tables
        conn = await asyncpg.connect(DATABASE_URL)
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY)")
            await conn.execute("DELETE FROM orders WHERE id IN (1, 2)")
            committed = await place_order(conn, 1)
            try:
                await place_order(conn, 2, fail=True)
            except RuntimeError as exc:
                print(f"order 2 rolled back ({exc}): no order, no job")
            orders = await conn.fetchval("SELECT count(*) FROM orders WHERE id IN (1, 2)")
        finally:
            await conn.close()
        print(f"orders stored: {orders}")

        worker = uw.worker(concurrency=1)
        running = asyncio.create_task(worker.run())
        job = await uw.get_job(committed)
        assert job is not None
        print(await job.result(timeout=10))
        worker.stop()
        await running


if __name__ == "__main__":
    asyncio.run(main())
