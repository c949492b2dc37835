"""Starlette glue: run an app's after-response tasks in a runner that its lifespan drains.

``install(app)`` is all an application needs::

    from starlette.applications import Starlette
    from underway import BackgroundTasks
    import underway.starlette

    app = Starlette(routes=[...], lifespan=my_lifespan)   # a lifespan is optional
    underway.starlette.install(app, grace=30)

It wraps the app's lifespan (the one it has is kept and runs outside ours, so tasks are
drained before the app's own shutdown code closes what they use) and adds
:class:`BackgroundMiddleware`, which binds the running :class:`BackgroundRunner` to each
request. Apps that prefer to say it in the constructor use the two parts directly::

    app = Starlette(
        routes=[...],
        lifespan=underway.starlette.lifespan(my_lifespan, grace=30),
        middleware=[Middleware(underway.starlette.BackgroundMiddleware)],
    )

The runner reaches requests through the lifespan state, which every current ASGI server
supports (uvicorn, hypercorn, granian, Starlette's TestClient).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from underway.background import (
    DEFAULT_GRACE,
    DEFAULT_MAX_THREADS,
    BackgroundRunner,
    _current_runner,
)

__all__ = ["STATE_KEY", "BackgroundMiddleware", "install", "lifespan"]

#: The key of the lifespan state under which the running BackgroundRunner is found.
STATE_KEY = "underway.background"

AppLifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


class BackgroundMiddleware:
    """Pure ASGI middleware that binds the lifespan's runner to each HTTP request.

    Requests of an app whose lifespan has no runner (not installed, or a server without
    lifespan state) pass through untouched; their tasks then run inside the request.
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        state = scope.get("state")
        runner = state.get(STATE_KEY) if state is not None and scope["type"] == "http" else None
        if not isinstance(runner, BackgroundRunner):
            await self.app(scope, receive, send)
            return
        token = _current_runner.set(runner)  # what runner.bind() does, one call less
        try:
            await self.app(scope, receive, send)
        finally:
            _current_runner.reset(token)


class _Lifespan:
    """An app's lifespan with a BackgroundRunner inside it."""

    def __init__(self, inner: AppLifespan | None, grace: float | timedelta, max_threads: int):
        BackgroundRunner(grace=grace, max_threads=max_threads)  # check the arguments now
        self.inner = inner
        self.grace = grace
        self.max_threads = max_threads

    def __call__(self, app: Any) -> AbstractAsyncContextManager[Mapping[str, Any]]:
        return self._run(app)

    @asynccontextmanager
    async def _run(self, app: Any) -> AsyncIterator[Mapping[str, Any]]:
        async with AsyncExitStack() as stack:
            state: Mapping[str, Any] | None = None
            if self.inner is not None:
                state = await stack.enter_async_context(self.inner(app))
            runner = BackgroundRunner(grace=self.grace, max_threads=self.max_threads)
            await stack.enter_async_context(runner)
            yield {**(state or {}), STATE_KEY: runner}


def lifespan(
    app_lifespan: AppLifespan | None = None,
    *,
    grace: float | timedelta = DEFAULT_GRACE,
    max_threads: int = DEFAULT_MAX_THREADS,
) -> Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any]]]:
    """Return a lifespan that runs ``app_lifespan`` with a :class:`BackgroundRunner` inside.

    At startup the app's own lifespan starts first, then the runner; at shutdown the runner
    drains first (waiting up to ``grace`` for unfinished tasks, then naming the rest in an
    ERROR record), then the app's lifespan ends. Its state gets the runner under
    :data:`STATE_KEY`, next to whatever the app's lifespan yielded. Requests use the runner
    only with :class:`BackgroundMiddleware` in the app.

    Args:
        app_lifespan: The app's lifespan function, if it has one.
        grace: How long shutdown waits for after-response tasks (seconds or a timedelta).
        max_threads: The most threads calling plain functions at once.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: ``grace`` is negative or ``max_threads`` is less than 1.
    """
    if app_lifespan is not None and not callable(app_lifespan):
        raise TypeError(
            f"lifespan() takes the app's lifespan function, not {app_lifespan!r}; "
            "pass the function decorated with @asynccontextmanager, or nothing."
        )
    return _Lifespan(app_lifespan, grace, max_threads)


def install(
    app: Starlette,
    *,
    grace: float | timedelta = DEFAULT_GRACE,
    max_threads: int = DEFAULT_MAX_THREADS,
) -> None:
    """Run ``app``'s after-response tasks in a runner that its lifespan drains at shutdown.

    Call it once, before the app starts serving. The app's lifespan (or its startup and
    shutdown handlers) is kept; see :func:`lifespan` for the order and ``grace``.

    Args:
        app: A Starlette application (FastAPI applications are ones too).
        grace: How long shutdown waits for after-response tasks (seconds or a timedelta).
        max_threads: The most threads calling plain functions at once.

    Raises:
        TypeError: ``app`` is not a Starlette application, or an argument has the wrong type.
        ValueError: ``app`` already has it, ``grace`` is negative, or ``max_threads`` < 1.
    """
    if not isinstance(app, Starlette):
        raise TypeError(
            f"install() takes a Starlette or FastAPI application, not {app!r}; for another "
            "ASGI framework, run an underway.background.BackgroundRunner in its lifespan."
        )
    if isinstance(app.router.lifespan_context, _Lifespan):
        raise ValueError("underway is already installed on this application; call install() once.")
    wrapped = lifespan(app.router.lifespan_context, grace=grace, max_threads=max_threads)
    app.add_middleware(BackgroundMiddleware)  # first: it refuses an app that has started
    app.router.lifespan_context = wrapped
