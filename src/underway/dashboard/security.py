"""Who may use the dashboard: the access token, sessions, CSRF tokens and the Origin check.

The model, in short (docs/dashboard.md has the long form):

* Every route but the login form and the static assets needs the access token, sent as
  ``Authorization: Bearer <token>`` (scripts, Prometheus) or exchanged on the login form
  for a session cookie (browsers). The cookie is HttpOnly, SameSite=Strict, scoped to the
  dashboard's path, and holds no secret: a random session id and its HMAC under a key
  derived from the token, so it works across server processes and dies when the token
  changes.
* Every action (a POST) from a browser session must carry that session's CSRF token, an
  HMAC of the session id, in its form, and when the browser sends an ``Origin`` (or
  ``Referer``) header it must be the dashboard's own. Requests authenticated by the Bearer
  header need no CSRF token: a cross-site page cannot make a browser send that header.
* ``insecure_no_auth`` turns the token off for local development; sessions and CSRF stay on,
  since a dashboard without a password is exactly what a hostile page would POST to.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

__all__ = [
    "COOKIE_NAME",
    "SESSION_LIFETIME",
    "Session",
    "Sessions",
    "generate_token",
    "origin_allowed",
    "safe_next",
]

#: The name of the session cookie.
COOKIE_NAME = "underway_dashboard"
#: How long a browser session lasts, in seconds.
SESSION_LIFETIME = 12 * 3600
#: The shortest access token accepted.
MIN_TOKEN_LENGTH = 16


def generate_token() -> str:
    """Return a new random access token (32 bytes from :mod:`secrets`, URL-safe)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Session:
    """An authenticated caller.

    Attributes:
        id: The session id the CSRF token is bound to (empty for Bearer callers).
        via: How the caller authenticated: ``"cookie"``, ``"bearer"`` or ``"none"`` (the
            insecure mode).
        csrf: The CSRF token forms of this session must carry.
    """

    id: str
    via: str
    csrf: str


class Sessions:
    """Issues and checks session cookies and CSRF tokens for one dashboard.

    Args:
        token: The access token, or ``None`` when authentication is turned off (the
            signing key is then random, so sessions last as long as the process).
    """

    def __init__(self, token: str | None) -> None:
        if token is not None and len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"the dashboard token must be at least {MIN_TOKEN_LENGTH} characters; "
                "leave it out to have one generated, or use underway.dashboard."
                "generate_token()."
            )
        self.token = token
        seed = token.encode() if token is not None else secrets.token_bytes(32)
        self._key = hashlib.sha256(b"underway-dashboard-session-v1|" + seed).digest()

    @property
    def auth_required(self) -> bool:
        """Whether callers must present the token."""
        return self.token is not None

    def _sign(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"{purpose}|{value}".encode(), hashlib.sha256).hexdigest()

    def token_matches(self, candidate: str) -> bool:
        """Whether ``candidate`` is the access token (in constant time)."""
        if self.token is None:
            return False
        return hmac.compare_digest(candidate.encode(), self.token.encode())

    def new_cookie(self) -> tuple[str, Session]:
        """Start a browser session; return the cookie value and the session."""
        session_id = secrets.token_urlsafe(18)
        payload = f"{session_id}.{int(time.time())}"
        value = f"{payload}.{self._sign('session', payload)}"
        return value, self._session(session_id, "cookie")

    def from_cookie(self, value: str | None) -> Session | None:
        """Return the session a cookie value stands for, or ``None`` if it is invalid."""
        if not value or len(value) > 200:
            return None
        payload, _, signature = value.rpartition(".")
        session_id, _, issued = payload.partition(".")
        if not (session_id and issued.isdigit() and signature):
            return None
        if not hmac.compare_digest(signature, self._sign("session", payload)):
            return None
        if not 0 <= time.time() - int(issued) <= SESSION_LIFETIME:
            return None
        return self._session(session_id, "cookie")

    def _session(self, session_id: str, via: str) -> Session:
        return Session(session_id, via, self._sign("csrf", session_id))

    def authenticate(self, conn: HTTPConnection) -> Session | None:
        """Return the caller's session, or ``None`` when it must be refused with 401.

        A Bearer header, when present, decides alone: a wrong token is refused even if a
        valid cookie comes with it.
        """
        header = conn.headers.get("authorization")
        if header is not None:
            scheme, _, credentials = header.partition(" ")
            if scheme.lower() == "bearer" and self.token_matches(credentials.strip()):
                return Session("", "bearer", "")
            return None
        session = self.from_cookie(conn.cookies.get(COOKIE_NAME))
        if session is not None:
            return session
        if not self.auth_required:
            return Session("", "none", "")
        return None

    def csrf_valid(self, session: Session, submitted: str | None) -> bool:
        """Whether a form's CSRF token belongs to the session."""
        if session.via == "bearer":
            return True
        if not session.id or not submitted:
            return False
        return hmac.compare_digest(submitted.encode(), session.csrf.encode())


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def origin_allowed(conn: HTTPConnection) -> bool:
    """Whether a state-changing request comes from the dashboard's own origin.

    The ``Origin`` header is compared with the scheme and ``Host`` the request was made
    to; without one, the ``Referer``'s origin is. A request with neither (an old client, a
    script) passes this check and still needs its CSRF token or Bearer header.
    """
    own = f"{conn.url.scheme}://{conn.headers.get('host', '')}".lower()
    origin = conn.headers.get("origin")
    if origin is not None:
        return origin.lower() == own
    referer = conn.headers.get("referer")
    if referer is not None:
        return _origin_of(referer) == own
    return True


def safe_next(target: str | None, base: str) -> str:
    """Return where to go after logging in: ``target`` if it is a path in the dashboard.

    Anything else (another host, a scheme, ``//evil``, backslashes) gives the dashboard's
    root, so that the login form is no open redirect.
    """
    root = base or "/"
    if not target or len(target) > 2000:
        return root
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return root
    if any(ord(ch) < 32 for ch in target):
        return root
    if base and not (target == base or target.startswith(base + "/")):
        return root
    return target
