"""The ASGI layer in front of every dashboard route: authentication and response headers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .security import COOKIE_NAME, SESSION_LIFETIME, Session, Sessions

__all__ = ["PUBLIC_PATHS", "SECURITY_HEADERS", "Guard", "route_path", "session_cookie"]

#: Routes reachable without the token: the login form and the static assets (the same CSS
#: and script for every installation, holding no data).
PUBLIC_PATHS = ("/login",)
PUBLIC_PREFIXES = ("/static/",)

#: Sent with every response: no framing, no sniffing, no inline script, nothing cached.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}

Unauthorized = Callable[[HTTPConnection], Awaitable[Response]]


def route_path(scope: Scope) -> str:
    """The request's path inside the dashboard (without the path it is mounted at)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


def session_cookie(conn: HTTPConnection, value: str, *, max_age: int = SESSION_LIFETIME) -> str:
    """Return a ``Set-Cookie`` value for the session cookie, scoped to the dashboard."""
    path = conn.scope.get("root_path", "") or "/"
    secure = "; Secure" if conn.url.scheme == "https" else ""
    return (
        f"{COOKIE_NAME}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    )


class Guard:
    """Refuses unauthenticated requests with 401 and adds the security headers.

    The caller's :class:`~underway.dashboard.security.Session` is put in the request state
    as ``underway_session``. With authentication off, a browser without a session gets
    one (a cookie), so that its forms carry a CSRF token all the same.
    """

    def __init__(self, app: ASGIApp, sessions: Sessions, unauthorized: Unauthorized) -> None:
        self.app = app
        self.sessions = sessions
        self.unauthorized = unauthorized

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra: list[tuple[bytes, bytes]] = [
            (name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()
        ]
        conn = HTTPConnection(scope)
        path = route_path(scope)
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        session: Session | None = None
        if not self.sessions.auth_required and not _loopback(conn.headers.get("host", "")):
            # Without a token, a page on another site whose name resolves to 127.0.0.1 (DNS
            # rebinding) would be same-origin with the dashboard: serve loopback names only.
            response = Response(
                "Without authentication the dashboard answers only to 127.0.0.1, localhost "
                "and [::1].",
                status_code=403,
                media_type="text/plain",
            )
            await response(scope, receive, _adding(send, extra))
            return
        if not public:
            session = self.sessions.authenticate(conn)
            if session is None:
                response = await self.unauthorized(conn)
                await response(scope, receive, _adding(send, extra))
                return
            if session.via == "none":
                value, session = self.sessions.new_cookie()
                extra.append((b"set-cookie", session_cookie(conn, value).encode()))
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        state["underway_session"] = session
        await self.app(scope, receive, _adding(send, extra))


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


def _loopback(host: str) -> bool:
    """Whether a ``Host`` header names this machine's loopback interface."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[: name.find("]") + 1]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    return name in LOOPBACK_HOSTS


def _adding(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            added = [(n, v) for n, v in headers if n == b"set-cookie" or n not in present]
            message = {**message, "headers": [*message.get("headers", []), *added]}
        await send(message)

    return sender
