"""The SQLite backend's database thread: one connection, one thread, group commit.

The event loop never touches the connection: it queues calls, and the thread runs them
and hands the results back in one wake-up of the loop per round of work. Writes that are
waiting together run in one transaction, each inside a savepoint of its own, and are
committed once (one ``fsync`` with ``synchronous=FULL``): concurrent enqueues and a
worker's releases share commits instead of queueing for one each. Every caller gets its
result only after the commit that holds its write, so nothing is reported stored that a
crash could lose; a write that raises is rolled back to its savepoint alone.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from underway.backends._sqlite_schema import transaction

__all__ = ["DatabaseThread"]

#: The most writes one commit takes, so that a flood of them still commits now and then.
GROUP_LIMIT = 64

_Call = tuple[Callable[..., Any], tuple[Any, ...], bool, "asyncio.Future[Any]"]


class DatabaseThread:
    """Runs calls on one SQLite connection in a thread of its own.

    Args:
        connect: Opens the connection (called on the thread).
        name: The thread's name.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._opened: asyncio.Future[None] = self._loop.create_future()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._conn: sqlite3.Connection | None = None

    async def start(self) -> None:
        """Start the thread and open the connection; raise what opening raised."""
        self._thread.start()
        await self._opened

    def call(
        self, fn: Callable[..., Any], args: tuple[Any, ...], write: bool
    ) -> asyncio.Future[Any]:
        """Queue ``fn(conn, *args)``; a write runs in a transaction (grouped with others)."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put((fn, args, write, future))
        return future

    async def stop(self) -> None:
        """Finish the queued calls, close the connection and end the thread."""
        self._queue.put(None)
        await self._closed

    # -- on the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._conn = self._connect()
        except BaseException as exc:
            self._loop.call_soon_threadsafe(_fail, self._opened, exc)
            return
        self._loop.call_soon_threadsafe(_succeed, self._opened, None)
        conn = self._conn
        try:
            self._serve(conn)
        finally:
            conn.close()
            self._loop.call_soon_threadsafe(_succeed, self._closed, None)

    def _serve(self, conn: sqlite3.Connection) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            calls, stop = [first], False
            while len(calls) < GROUP_LIMIT:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                calls.append(more)
            try:
                results = self._round(conn, calls)
            except BaseException as exc:  # never leave a caller waiting
                results = [(future, False, exc) for _, _, _, future in calls]
            self._loop.call_soon_threadsafe(_deliver, results)
            if stop:
                return

    def _round(self, conn: sqlite3.Connection, calls: list[_Call]) -> list[_Outcome]:
        """Run the reads one by one and the writes in one transaction."""
        results: list[_Outcome] = []
        writes = [c for c in calls if c[2]]
        for fn, args, write, future in calls:
            if not write:
                results.append(_attempt(future, fn, conn, args))
        if len(writes) == 1:
            fn, args, _, future = writes[0]
            results.append(_attempt(future, transaction, conn, (fn, *args)))
        elif writes:
            results += _group(conn, writes)
        return results


_Outcome = tuple["asyncio.Future[Any]", bool, Any]


def _attempt(
    future: asyncio.Future[Any], fn: Callable[..., Any], conn: sqlite3.Connection, args: Any
) -> _Outcome:
    try:
        return future, True, fn(conn, *args)
    except BaseException as exc:
        return future, False, exc


def _group(conn: sqlite3.Connection, writes: list[_Call]) -> list[_Outcome]:
    """Run several writes in one transaction, each in a savepoint; commit once."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except BaseException as exc:
        return [(future, False, exc) for _, _, _, future in writes]
    results: list[_Outcome] = []
    try:
        for fn, args, _, future in writes:
            conn.execute("SAVEPOINT call")
            try:
                value = fn(conn, *args)
            except BaseException as exc:
                conn.execute("ROLLBACK TO call")
                conn.execute("RELEASE call")
                results.append((future, False, exc))
                continue
            conn.execute("RELEASE call")
            results.append((future, True, value))
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return [(future, False, exc) for _, _, _, future in writes]
    return results


# -- on the event loop ------------------------------------------------------------------------


def _deliver(results: list[_Outcome]) -> None:
    for future, ok, value in results:
        if ok:
            _succeed(future, value)
        else:
            _fail(future, value)


def _succeed(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
