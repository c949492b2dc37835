"""Serve an ASGI app in-process as a server would: its lifespan, then requests with its state.

httpx's ASGITransport sends requests but runs no lifespan; Starlette's TestClient does, but
warns about its httpx dependency. ``Served`` speaks the ASGI lifespan protocol itself, hands
the lifespan state to every request (as uvicorn does), and shuts the app down on exit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from underway.background import BackgroundRunner
from underway.starlette import STATE_KEY


@dataclass
class Served:
    """An app whose lifespan has started."""

    client: httpx.AsyncClient
    state: dict[str, Any]
    app: ASGIApp

    @property
    def runner(self) -> BackgroundRunner:
        """The BackgroundRunner that the lifespan started (the app must be installed)."""
        runner = self.state[STATE_KEY]
        assert isinstance(runner, BackgroundRunner)
        return runner

    async def call(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Call the app directly with an ASGI scope, adding the lifespan state."""
        await self.app({**scope, "state": dict(self.state)}, receive, send)


@asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[Served]:
    """Start ``app``'s lifespan, yield a client for it, then shut the app down."""
    state: dict[str, Any] = {}
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}

    async def run_lifespan() -> None:
        await app({**scope, "state": state}, to_app.get, from_app.put)

    lifespan = asyncio.create_task(run_lifespan())
    await to_app.put({"type": "lifespan.startup"})
    started = await from_app.get()
    assert started["type"] == "lifespan.startup.complete", started

    async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, "state": dict(state)}, receive, send)

    transport = httpx.ASGITransport(app=with_state, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Served(client=client, state=state, app=app)
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        stopped = await from_app.get()
        await lifespan
        assert stopped["type"] == "lifespan.shutdown.complete", stopped


def http_scope(path: str, method: str = "GET") -> Scope:
    """A minimal HTTP scope for calling an app directly."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
    }
