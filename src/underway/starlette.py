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

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from underway.background import (
    DEFAULT_GRACE,
    DEFAULT_MAX_THREADS,
    BackgroundRunner,
    _current_runner,
)
from underway.loop import Loop

if TYPE_CHECKING:
    from underway.app import Underway
    from underway.worker import Worker

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


class _Services:
    """The durable queue's parts an app runs in its lifespan: the app's store, an in-process
    worker (with the schedules), and periodic loops."""

    def __init__(
        self,
        uw: Underway | None,
        worker: bool,
        worker_options: Mapping[str, Any] | None,
        loops: Sequence[Loop[Any]],
    ) -> None:
        if worker and uw is None:
            raise TypeError(
                "install(app, worker=True) needs the app's queue: install(app, uw, ...)."
            )
        for item in loops:
            if not isinstance(item, Loop):
                raise TypeError(f"loops= takes underway.loop objects, not {item!r}.")
        self.uw = uw
        self.worker = worker
        self.worker_options = dict(worker_options or {})
        self.loops = list(loops)

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        worker: Worker | None = None
        worker_task: asyncio.Task[None] | None = None
        if self.uw is not None:
            await self.uw.open()
        try:
            if self.worker and self.uw is not None:
                worker = self.uw.worker(**self.worker_options)
                worker_task = asyncio.create_task(worker.run(), name="underway-app-worker")
                await asyncio.wait(
                    [worker_task, asyncio.ensure_future(worker.started())],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if worker_task.done():
                    worker_task.result()  # it failed to start: raise why
            for item in self.loops:
                item.start()
            yield
        finally:
            for item in self.loops:
                item.stop()
            tasks = [t for t in (item.get_task() for item in self.loops) if t is not None]
            if worker is not None and worker_task is not None:
                worker.stop()
                tasks.append(worker_task)
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.uw is not None:
                await self.uw.close()


class _Lifespan:
    """An app's lifespan with a BackgroundRunner (and optionally the queue) inside it."""

    def __init__(
        self,
        inner: AppLifespan | None,
        grace: float | timedelta,
        max_threads: int,
        services: _Services | None = None,
    ):
        BackgroundRunner(grace=grace, max_threads=max_threads)  # check the arguments now
        self.inner = inner
        self.grace = grace
        self.max_threads = max_threads
        self.services = services
        # Called at startup, once the app's own lifespan has started and before requests
        # come: underway.fastapi sets it to prepare the app's routes.
        self.prepare: Callable[[], object] | None = None

    def __call__(self, app: Any) -> AbstractAsyncContextManager[Mapping[str, Any]]:
        return self._run(app)

    @asynccontextmanager
    async def _run(self, app: Any) -> AsyncIterator[Mapping[str, Any]]:
        async with AsyncExitStack() as stack:
            state: Mapping[str, Any] | None = None
            if self.inner is not None:
                state = await stack.enter_async_context(self.inner(app))
            if self.prepare is not None:
                self.prepare()
            runner = BackgroundRunner(grace=self.grace, max_threads=self.max_threads)
            await stack.enter_async_context(runner)
            if self.services is not None:
                # Entered last, left first: the worker and loops stop, then after-response
                # tasks drain, then the app's own shutdown runs.
                await stack.enter_async_context(self.services.run())
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
    uw: Underway | None = None,
    *,
    worker: bool = False,
    worker_options: Mapping[str, Any] | None = None,
    loops: Sequence[Loop[Any]] = (),
    dashboard: str | None = None,
    dashboard_options: Mapping[str, Any] | None = None,
    grace: float | timedelta = DEFAULT_GRACE,
    max_threads: int = DEFAULT_MAX_THREADS,
) -> None:
    """Run ``app``'s after-response tasks in a runner that its lifespan drains at shutdown.

    Call it once, before the app starts serving. The app's lifespan (or its startup and
    shutdown handlers) is kept; see :func:`lifespan` for the order and ``grace``.

    With the durable queue ``uw``, the lifespan also opens its store and closes it at
    shutdown, and can run, for small deployments, a worker (with the queue's schedules),
    periodic loops and the dashboard inside the web app.

    Args:
        app: A Starlette application (FastAPI applications are ones too).
        uw: The app's durable queue (``underway.Underway``), if it has one.
        worker: Run a worker for ``uw`` in the app's process; it stops gracefully at
            shutdown, before after-response tasks are drained.
        worker_options: Arguments for the worker (``concurrency``, ``queues``, ...).
        loops: ``underway.loop`` objects to start at startup and stop at shutdown.
        dashboard: Mount the dashboard at this path (needs ``underway[dashboard]``).
        dashboard_options: Arguments for the dashboard (``token``, ``read_only``, ...).
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
    if dashboard is not None and uw is None:
        raise TypeError("install(app, dashboard=...) needs the app's queue: install(app, uw, ...).")
    wanted = uw is not None or worker or bool(loops)
    services = _Services(uw, worker, worker_options, loops) if wanted else None
    if app.router.lifespan_context is not None and not callable(app.router.lifespan_context):
        raise TypeError("the app's lifespan is not callable.")
    wrapped = _Lifespan(app.router.lifespan_context, grace, max_threads, services)
    app.add_middleware(BackgroundMiddleware)  # first: it refuses an app that has started
    app.router.lifespan_context = wrapped
    if dashboard is not None and uw is not None:
        from underway.dashboard import mount  # needs the 'dashboard' extra

        mount(app, uw, path=dashboard, **dict(dashboard_options or {}))
