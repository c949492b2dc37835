"""Enqueue from synchronous code: a script, a Flask or Django view, a management command.

``enqueue_sync`` stores the job and returns at once; a worker runs it::

    cd examples
    python jobs_from_sync_code.py             # enqueues three jobs
    underway worker jobs_from_sync_code:uw    # runs them (Ctrl-C to stop)
    underway jobs list jobs_from_sync_code:uw

A task's stored name is ``module.function``; run the producer and the worker from the same
directory so that both import the module under the same name (or give ``name=``).
"""

from __future__ import annotations

from underway import Underway

uw = Underway("sqlite:///underway-sync.db")


@uw.task(retries=5)
def charge_card(order_id: int, cents: int) -> str:
    return f"charged order {order_id}: {cents / 100:.2f}"


def main() -> None:
    for order_id, cents in [(1, 1999), (2, 500), (3, 12000)]:
        job = charge_card.enqueue_sync(order_id, cents)
        print(f"enqueued {job.task_name} as job {job.id} ({job.status})")


if __name__ == "__main__":
    main()
