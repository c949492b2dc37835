"""FastAPI glue: ``BackgroundTasks`` that FastAPI injects, and ``install(app)``.

Change one import and the endpoints stay as they are::

    from fastapi import FastAPI
    from underway.fastapi import BackgroundTasks   # was: from fastapi import BackgroundTasks

    @app.post("/items")
    async def create_item(name: str, background_tasks: BackgroundTasks):
        background_tasks.add_task(write_log, f"created {name}")
        return {"message": "ok"}

``BackgroundTasks`` here is ``Annotated[underway.BackgroundTasks, Depends(...)]``: FastAPI
resolves it as a dependency, once per request, so the endpoint and every dependency that
asks for it share one :class:`underway.BackgroundTasks` (also when the parameter is written
``background_tasks: BackgroundTasks = None``). Its tasks run when FastAPI's own background
tasks would: after the response is sent, and not at all when the endpoint raises, since no
response of its own is sent then.

A parameter annotated with ``underway.BackgroundTasks`` itself is not this: FastAPI treats
every subclass of Starlette's ``BackgroundTasks`` as its own and passes a
``fastapi.BackgroundTasks``. Import the annotation from this module.

``install(app)`` adds what :func:`underway.starlette.install` does: a runner in the app's
lifespan that takes the tasks when the response is sent and drains them at shutdown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

from fastapi import Depends, FastAPI, Request
from starlette.background import BackgroundTask as StarletteBackgroundTask
from starlette.background import BackgroundTasks as StarletteBackgroundTasks

from underway import background
from underway import starlette as _starlette
from underway.background import DEFAULT_GRACE, DEFAULT_MAX_THREADS
from underway.loop import Loop

if TYPE_CHECKING:
    from underway.app import Underway

__all__ = ["BackgroundTasks", "install"]


async def request_background_tasks(
    request: Request, fastapi_tasks: StarletteBackgroundTasks
) -> background.BackgroundTasks:
    """Return the request's :class:`underway.BackgroundTasks`, attached to its response.

    The dependency behind :data:`BackgroundTasks`; FastAPI caches it per request. The
    instance goes into the background tasks FastAPI gives the response, so it runs when
    they do. Its durable tasks (functions registered with ``@uw.task``) are stored when the
    endpoint has returned, before the response is sent, in the exit of FastAPI's function
    scope; if the endpoint raises, they are not stored, just as the other tasks do not run.

    That exit is registered only when a durable task is added: a ``yield`` dependency
    would do the same on every request, at several times the cost of this one.
    """
    tasks = background.BackgroundTasks()
    # What fastapi_tasks.add_task(tasks) would append, without inspecting tasks.__call__
    # again on every request to learn that it is async.
    entry = StarletteBackgroundTask.__new__(StarletteBackgroundTask)
    entry.__dict__.update(func=tasks, args=(), kwargs={}, is_async=True)
    fastapi_tasks.tasks.append(entry)
    function_scope = request.scope.get("fastapi_function_astack")
    if isinstance(function_scope, AsyncExitStack):

        async def store_durable(
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> bool:
            if exc_type is None and tasks.durable:
                await tasks.enqueue_durable()
            return False

        def register() -> None:
            function_scope.push_async_exit(store_durable)

        tasks.before_response = register
    # Without it (a FastAPI without function scopes), durable tasks are stored when the
    # tasks run, after the response.
    return tasks


#: Annotate an endpoint or dependency parameter with it to receive the request's tasks.
BackgroundTasks: TypeAlias = Annotated[
    background.BackgroundTasks, Depends(request_background_tasks)
]


def install(
    app: FastAPI,
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

    Call it once, after creating the app and before it serves. The app's own lifespan (or
    its startup and shutdown handlers) is kept: it starts before the runner and ends after
    the runner has drained, so tasks can still use what it set up.

    With the durable queue ``uw``, the lifespan also opens and closes its store and can
    run a worker (with the schedules), loops and the dashboard inside the app; see
    :func:`underway.starlette.install` for ``worker``, ``worker_options``, ``loops``,
    ``dashboard`` and ``dashboard_options``.

    Args:
        app: The FastAPI application.
        uw: The app's durable queue, if it has one.
        grace: How long shutdown waits for unfinished after-response tasks (seconds or a
            timedelta); what is still unfinished then is named in an ERROR record.
        max_threads: The most threads calling plain ``def`` tasks at once.

    Raises:
        TypeError: ``app`` is not a FastAPI (or Starlette) app, or an argument has the
            wrong type.
        ValueError: ``app`` already has it, ``grace`` is negative, or ``max_threads`` < 1.
    """
    _starlette.install(
        app,
        uw,
        worker=worker,
        worker_options=worker_options,
        loops=loops,
        dashboard=dashboard,
        dashboard_options=dashboard_options,
        grace=grace,
        max_threads=max_threads,
    )
