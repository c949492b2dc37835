"""A lean connection for the Redis backend's hot scripts: enqueue, acquire, release, extend.

redis-py spends several hundred microseconds of Python on each command (a pool, retries,
argument encoding, a parser in Python); for a job queue whose every job is two or three
script calls, that is most of the client's time. This connection writes the commands
itself and reads the replies with hiredis, and it is shared: callers write as they come
and each reply goes to the next caller waiting, in order, so concurrent callers share
round trips (the server answers in the order it was asked).

It is opened with redis-py's own settings for the URL (host, port, database, user,
password, client name, TLS context, timeouts), speaks RESP2, and raises redis-py's
exceptions, so that the backend's one place for driver errors handles both. It is used
only when hiredis is installed (the ``redis`` extra installs it); otherwise every call
goes through redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Sequence
from typing import Any, cast

from redis import exceptions as rx

try:
    import hiredis
except ImportError:  # pragma: no cover - the redis extra installs it
    #: Whether the lean connection can be used (it needs hiredis to read replies).
    AVAILABLE = False
else:
    AVAILABLE = True

__all__ = ["AVAILABLE", "Wire", "pack"]

Arg = str | bytes | int


def pack(args: Sequence[Arg]) -> bytes:
    """One command in the Redis protocol (by hiredis, in C)."""
    command: Any = tuple(args)  # (its stub takes a tuple of one item)
    return cast(bytes, hiredis.pack_command(command))


class _Protocol(asyncio.Protocol):
    """One connection: the replies it reads go to its own callers, in order."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.reader = hiredis.Reader(replyError=rx.ResponseError, protocolError=rx.InvalidResponse)
        self.transport: asyncio.Transport | None = None
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.failure: Exception | None = None  # why it was given up, once it is

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports do not derive from asyncio's.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except rx.InvalidResponse as exc:
                self.wire.lost(self, rx.ConnectionError(f"bad reply from Redis: {exc}"))
                return
            if reply is False:
                return
            if not self.waiting:  # a reply nobody asked for: the stream is out of step
                self.wire.lost(self, rx.ConnectionError("unexpected reply from Redis"))
                return
            future = self.waiting.popleft()
            if not future.done():
                future.set_result(reply)
            else:  # its caller was cancelled: skip its reply, unless it is to be kept
                self.wire.skipped(future, reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.wire.lost(self, rx.ConnectionError(f"Redis closed the connection ({exc or 'EOF'})"))


class Wire:
    """One multiplexed connection, opened on first use and again after it is lost.

    Args:
        connection: A redis-py connection object for the URL, never connected: its settings
            say where and how to connect.
    """

    def __init__(self, connection: Any) -> None:
        self._settings = connection
        self._protocol: _Protocol | None = None  # connected, and the handshake done
        self._opening: _Protocol | None = None  # connected, the handshake under way
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._closed = False
        # Blocking calls whose caller was cancelled, and their replies once they come.
        self._late: dict[asyncio.Future[Any], asyncio.Future[Any]] = {}

    async def call(self, *args: Arg) -> Any:
        """Send one command and return its reply (an error reply is returned, not raised)."""
        (reply,) = await self.call_many([args])
        return reply

    async def send_blocking(self, wait: float, *args: Arg) -> asyncio.Future[Any]:
        """Send a command that blocks on the server for up to ``wait`` seconds (BLPOP).

        Returns the future of its reply, to await directly: no task stands between the
        reply and its caller. If the caller is cancelled, the future is, but its reply is
        kept for :meth:`late_reply`. The URL's ``socket_timeout`` counts from the end of
        the wait.

        Raises:
            redis.exceptions.ConnectionError: The connection failed or was lost (also set
                on the future when it is lost later).
        """
        if self._closed:
            raise rx.ConnectionError("the Redis backend was closed")
        protocol = self._protocol or await self._connect()
        transport = protocol.transport
        if protocol.failure is not None or transport is None or transport.is_closing():
            raise rx.ConnectionError(f"the connection to Redis was lost ({protocol.failure})")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        protocol.waiting.append(future)
        transport.write(pack(args))
        self._late[future] = loop.create_future()
        timeout = self._settings.socket_timeout
        timer = None
        if timeout is not None:
            timer = loop.call_later(wait + timeout, self._expire, protocol, future, timeout)

        def settled(_: object) -> None:
            if timer is not None:
                timer.cancel()
            if not future.cancelled():  # answered: no late reply to keep for it
                self._late.pop(future, None)

        future.add_done_callback(settled)
        return future

    async def late_reply(self, future: asyncio.Future[Any], timeout: float) -> Any:
        """The reply to a blocking call whose caller was cancelled, when it comes.

        Raises:
            redis.exceptions.ConnectionError: The connection was lost first.
            asyncio.TimeoutError: No reply within ``timeout`` seconds.
        """
        late = self._late.get(future)
        if late is None:
            raise rx.ConnectionError("no reply is awaited for that call")
        try:
            return await asyncio.wait_for(asyncio.shield(late), timeout)
        finally:
            if late.done():
                self._late.pop(future, None)

    def skipped(self, future: asyncio.Future[Any], reply: Any) -> None:
        """A reply whose caller was cancelled arrived: keep it if it is a blocking call's."""
        late = self._late.get(future)
        if late is not None and not late.done():
            late.set_result(reply)

    async def call_many(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Send commands in one write; return their replies in order.

        An error reply is returned in its place as a :class:`redis.exceptions.ResponseError`
        rather than raised, so that the caller sees every reply.

        Raises:
            redis.exceptions.ConnectionError: The connection failed or was lost.
            redis.exceptions.TimeoutError: No reply within the URL's ``socket_timeout``.
        """
        if self._closed:
            raise rx.ConnectionError("the Redis backend was closed")
        protocol = self._protocol or await self._connect()
        return await self._send(protocol, commands)

    async def _send(self, protocol: _Protocol, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        transport = protocol.transport
        if protocol.failure is not None or transport is None or transport.is_closing():
            raise rx.ConnectionError(f"the connection to Redis was lost ({protocol.failure})")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        protocol.waiting.extend(futures)
        transport.write(b"".join([pack(command) for command in commands]))
        timeout = self._settings.socket_timeout
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, self._expire, protocol, futures[-1], timeout)
        try:
            return [await future for future in futures]
        except BaseException:
            # The other replies of this call are not wanted now: skip them when they come,
            # and mark a failure already set on them as seen.
            for future in futures:
                if not future.done():
                    future.cancel()
                elif not future.cancelled():
                    future.exception()
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, protocol: _Protocol, last: asyncio.Future[Any], timeout: float) -> None:
        if not last.done():
            self.lost(protocol, rx.TimeoutError(f"no reply from Redis within {timeout:g} s"))

    def lost(self, protocol: _Protocol, exc: Exception) -> None:
        """Give up ``protocol``'s connection: fail every call waiting on it."""
        if protocol.failure is None:
            protocol.failure = exc
        if protocol is self._protocol:
            self._protocol = None
        if protocol is self._opening:
            self._opening = None
        if protocol.transport is not None:
            protocol.transport.abort()
        waiting, protocol.waiting = protocol.waiting, collections.deque()
        for future in waiting:
            if not future.done():
                future.set_exception(exc)
            late = self._late.pop(future, None)
            if late is not None and not late.done():
                late.set_exception(exc)
                late.exception()  # (seen: nobody may be waiting for it)

    def close(self) -> None:
        """Close the connection; calls still waiting fail with ConnectionError."""
        self._closed = True
        for protocol in (self._protocol, self._opening):
            if protocol is not None:
                self.lost(protocol, rx.ConnectionError("the Redis backend was closed"))

    async def _connect(self) -> _Protocol:
        while True:
            protocol = self._protocol
            if protocol is not None:
                return protocol
            connecting = self._connecting
            if connecting is None or connecting.done():
                connecting = self._connecting = asyncio.ensure_future(self._open())
            try:
                protocol = await asyncio.shield(connecting)
            finally:
                if connecting.done() and self._connecting is connecting:
                    self._connecting = None
            if protocol is self._protocol:
                return protocol
            # Lost again before this caller got to use it: connect anew.

    async def _open(self) -> _Protocol:
        settings = self._settings
        loop = asyncio.get_running_loop()
        context = getattr(settings, "ssl_context", None)
        ssl = context.get() if context is not None else None
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Protocol(self),
                    settings.host,
                    settings.port,
                    ssl=ssl,
                    server_hostname=settings.host if ssl is not None else None,
                ),
                settings.socket_connect_timeout,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            raise rx.ConnectionError(
                f"cannot connect to Redis at {settings.host}:{settings.port}: {exc}"
            ) from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._opening = protocol
        try:
            await self._handshake(protocol)
            if self._closed or protocol.failure is not None:
                raise rx.ConnectionError(
                    f"the connection to Redis was lost ({protocol.failure or 'closed'})"
                )
        except BaseException:
            self.lost(protocol, rx.ConnectionError("the Redis handshake failed"))
            raise
        self._opening, self._protocol = None, protocol
        return protocol

    async def _handshake(self, protocol: _Protocol) -> None:
        settings = self._settings
        commands: list[list[Arg]] = []
        if settings.password is not None:
            user = settings.username
            auth: list[Arg] = ["AUTH", settings.password]
            commands.append(auth if user is None else ["AUTH", user, settings.password])
        if settings.db:
            commands.append(["SELECT", settings.db])
        if settings.client_name:
            commands.append(["CLIENT", "SETNAME", settings.client_name])
        if not commands:
            return
        for reply in await self._send(protocol, commands):
            if isinstance(reply, rx.ResponseError):
                text = str(reply)
                if text.startswith(("WRONGPASS", "NOAUTH", "invalid password")):
                    raise rx.AuthenticationError(text)
                raise reply
