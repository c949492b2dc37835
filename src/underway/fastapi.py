"""FastAPI glue: ``BackgroundTasks`` that FastAPI injects, and ``install(app)``.

Change one import and the endpoints stay as they are::

    from fastapi import FastAPI
    from underway.fastapi import BackgroundTasks   # was: from fastapi import BackgroundTasks

    @app.post("/items")
    async def create_item(name: str, background_tasks: BackgroundTasks):
        background_tasks.add_task(write_log, f"created {name}")
        return {"message": "ok"}

``BackgroundTasks`` here is ``Annotated[underway.BackgroundTasks, Depends(...)]``. The
request's instance is the tasks object FastAPI itself creates for the request and gives
the response, made an :class:`underway.BackgroundTasks`; so the endpoint and every
dependency that asks for it share one instance (also when the parameter is written
``background_tasks: BackgroundTasks = None``, and with a parameter annotated with
FastAPI's own ``BackgroundTasks`` in the same request). Its tasks run when FastAPI's own
would: after the response is sent, and not at all when the endpoint raises, since no
response of its own is sent then. Durable tasks (functions registered with ``@uw.task``)
are stored once the endpoint has returned, before the response is sent.

``install(app)`` adds what :func:`underway.starlette.install` does (a runner in the app's
lifespan that takes the tasks when the response is sent and drains them at shutdown), and
at startup prepares the app's endpoints, included routers' too: an endpoint that takes
``BackgroundTasks`` then gets the instance as FastAPI's own tasks parameter, which costs
FastAPI far less per request than the dependency. Dependencies that take it, routes added
once the app serves and apps without ``install()`` keep the dependency; they behave the
same.

A parameter annotated with ``underway.BackgroundTasks`` itself is not this: FastAPI treats
every subclass of Starlette's ``BackgroundTasks`` as its own and passes a
``fastapi.BackgroundTasks``. Import the annotation from this module.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from types import FunctionType, TracebackType
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, cast

import fastapi.routing
from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.background import BackgroundTasks as StarletteBackgroundTasks
from starlette.types import Scope

from underway import background
from underway import starlette as _starlette
from underway.background import DEFAULT_GRACE, DEFAULT_MAX_THREADS
from underway.loop import Loop

if TYPE_CHECKING:
    from underway.app import Underway

__all__ = ["BackgroundTasks", "install"]

logger = logging.getLogger("underway.fastapi")


def _adopt(tasks: StarletteBackgroundTasks) -> background.BackgroundTasks:
    """Make the tasks object that FastAPI created for this request an underway one.

    FastAPI creates one tasks object per request, hands it to every parameter that asks
    for it and gives it to the response; turning that very object into an
    :class:`underway.BackgroundTasks` (the two classes share their layout) makes it the
    request's one instance, run by the response itself, with no wrapper around it. Tasks
    already added to it are kept.
    """
    if not isinstance(tasks, background.BackgroundTasks):
        tasks.__class__ = background.BackgroundTasks
        # What BackgroundTasks.__init__ sets, but for the list of tasks, kept.
        tasks.__dict__.update(durable=[], before_response=None)
    return cast(background.BackgroundTasks, tasks)


def _store_durable_at_exit(tasks: background.BackgroundTasks, scope: Scope) -> None:
    """Store the durable tasks of ``tasks`` when FastAPI's function scope exits.

    It exits when the endpoint has returned and its response is made, before the
    response is sent; not if the endpoint raised. Without it (a FastAPI without function
    scopes), durable tasks are stored when the tasks run, after the response.
    """
    function_scope = scope.get("fastapi_function_astack")
    if not isinstance(function_scope, AsyncExitStack):
        return

    async def store_durable(
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc_type is None and tasks.durable:
            await tasks.enqueue_durable()
        return False

    function_scope.push_async_exit(store_durable)


async def request_background_tasks(
    request: Request, fastapi_tasks: StarletteBackgroundTasks
) -> background.BackgroundTasks:
    """Return the request's :class:`underway.BackgroundTasks`: FastAPI's, adopted.

    The dependency behind :data:`BackgroundTasks`; FastAPI caches it per request. The
    instance is the tasks object FastAPI gives the response, so it runs when FastAPI's
    own would. Its durable tasks (functions registered with ``@uw.task``) are stored when
    the endpoint has returned, before the response is sent, in the exit of FastAPI's
    function scope; if the endpoint raises, they are not stored, just as the other tasks
    do not run.

    That exit is registered only when a durable task is added: a ``yield`` dependency
    would do the same on every request, at several times the cost of this one.
    """
    tasks = _adopt(fastapi_tasks)
    if tasks.before_response is None:
        tasks.before_response = functools.partial(_store_durable_at_exit, tasks, request.scope)
    return tasks


#: Annotate an endpoint or dependency parameter with it to receive the request's tasks.
BackgroundTasks: TypeAlias = Annotated[
    background.BackgroundTasks, Depends(request_background_tasks)
]


# The name under which a prepared endpoint receives the request, when it does not ask for
# it itself; taken out of the arguments again before the endpoint is called.
_REQUEST = "_underway_request"


def _endpoint_dependants(app: FastAPI) -> Iterator[Dependant]:
    """The dependants with which ``app``'s HTTP routes call their endpoints.

    Routes of included routers are served through their own dependants: recent FastAPI
    versions build them per inclusion, earlier ones copy the routes into the app.
    """
    iter_route_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_route_contexts is None:
        for route in app.router.routes:
            if isinstance(route, APIRoute):
                yield route.dependant
        return
    for context in iter_route_contexts(app.router.routes):
        if isinstance(context.original_route, APIRoute):
            dependant = getattr(context, "dependant", None)
            if isinstance(dependant, Dependant):
                yield dependant


def _pass_tasks_directly(dependant: Dependant) -> bool:
    """Have FastAPI pass the request's tasks object to the endpoint, without a dependency.

    FastAPI resolves the ``BackgroundTasks`` annotation as a dependency, which costs it
    far more per request than the tasks parameter it knows (a parameter annotated with
    its own ``BackgroundTasks``). This turns the endpoint's parameter into that one: the
    dependency is dropped from ``dependant`` and the endpoint is called through a wrapper
    that adopts the object (:func:`_adopt`) first. Dependencies that ask for it keep the
    dependency; all get the same object. The endpoint, its signature and the OpenAPI
    schema are unchanged: the dependency reads nothing that the schema describes.

    Returns:
        Whether ``dependant`` was prepared: not when the endpoint takes no such
        parameter, takes FastAPI's own too, or is a generator or not a plain function.
    """
    ours = [sub for sub in dependant.dependencies if sub.call is request_background_tasks]
    endpoint = dependant.call
    if (
        len(ours) != 1
        or ours[0].name is None
        or dependant.background_tasks_param_name is not None
        or not isinstance(endpoint, FunctionType)
        or inspect.isgeneratorfunction(endpoint)
        or inspect.isasyncgenfunction(endpoint)
    ):
        return False
    tasks_name = ours[0].name
    request_name = dependant.request_param_name or _REQUEST
    own_request = dependant.request_param_name is not None

    def before(values: dict[str, Any]) -> tuple[Request, background.BackgroundTasks]:
        request = values[request_name] if own_request else values.pop(request_name)
        return request, _adopt(values[tasks_name])

    def after(request: Request, tasks: background.BackgroundTasks) -> None:
        if tasks.durable and tasks.before_response is None:
            _store_durable_at_exit(tasks, request.scope)

    call: Callable[..., Any]
    if inspect.iscoroutinefunction(endpoint):

        async def call(**values: Any) -> Any:
            request, tasks = before(values)
            result = await endpoint(**values)
            after(request, tasks)
            return result

    else:

        def call(**values: Any) -> Any:
            request, tasks = before(values)
            result = endpoint(**values)
            after(request, tasks)
            return result

    functools.update_wrapper(call, endpoint)
    _point_errors_at(call, endpoint)
    dependant.dependencies = [sub for sub in dependant.dependencies if sub is not ours[0]]
    dependant.background_tasks_param_name = tasks_name
    dependant.request_param_name = request_name
    dependant.call = call
    return True


def _point_errors_at(wrapper: Callable[..., Any], endpoint: Callable[..., Any]) -> None:
    # FastAPI names the endpoint's file and line in validation errors, from the function
    # it calls, remembered by id; without this they would name this module's file.
    cache = getattr(fastapi.routing, "_endpoint_context_cache", None)
    extract = getattr(fastapi.routing, "_extract_endpoint_context", None)
    if isinstance(cache, dict) and callable(extract):
        cache[id(wrapper)] = extract(endpoint)


def _prepare_routes(app: FastAPI) -> int:
    """Prepare the endpoints of ``app``'s routes (see :func:`_pass_tasks_directly`).

    It only saves CPU: if this FastAPI's routes cannot be read as expected, a WARNING
    says so and every endpoint keeps the dependency, which works the same.

    Returns:
        How many were prepared.
    """
    try:
        return sum(_pass_tasks_directly(dependant) for dependant in _endpoint_dependants(app))
    except Exception:
        logger.warning(
            "Could not prepare the app's endpoints for underway.fastapi.BackgroundTasks; "
            "they resolve it as a dependency instead, which works the same at a higher "
            "CPU cost per request.",
            exc_info=True,
        )
        return 0


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

    At startup, the endpoints of the app's routes (included routers' too) that take
    :data:`BackgroundTasks` are prepared to receive it as FastAPI's own tasks parameter,
    which costs FastAPI less per request than the dependency; what they see is the same.
    Routes added once the app serves keep the dependency.

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
    lifespan = app.router.lifespan_context
    assert isinstance(lifespan, _starlette._Lifespan)
    lifespan.prepare = functools.partial(_prepare_routes, app)
