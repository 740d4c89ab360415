"""FastAPI integration: ``OffloadTasks``, offload's ``BackgroundTasks`` as a dependency.

::

    from server.fastapi import OffloadTasks

    @app.post("/register", status_code=201)
    def register(signup: Signup, tasks: OffloadTasks) -> dict[str, str]:
        tasks.add_task(send_email, signup.email, "Welcome")
        return {"status": "registered"}

FastAPI only injects *its own* ``BackgroundTasks`` for a parameter annotated
``fastapi.BackgroundTasks``, and attaches it to the response only when the
route does not return a ``Response`` with a ``background`` of its own: in
that case the injected tasks are silently dropped (fastapi/fastapi#11215).
``OffloadTasks`` does not go through that path at all. It is a dependency
with ``yield`` whose exit code hands the pending calls to the process's
outbox (``await tasks()``, which does not wait for the pool), whatever the
route returned, so a route's own ``JSONResponse(..., background=...)``
cannot lose them.

When the calls are handed off: in the dependency's exit code, which FastAPI
runs after the response has been sent (since 0.118; from 0.106 to 0.117,
just before it is sent, which costs the response nothing since the hand-off
does not wait). If the route raises, the calls are discarded, as FastAPI
and Starlette discard the background tasks of a failed request. If the
response's own in-process background task raises *after* the route
returned, the calls are still handed off (FastAPI 0.121 and later; before,
FastAPI cannot tell the two cases apart, and the calls are discarded with a
warning in the log). A route that wants its calls
stored before it answers awaits ``tasks.submit()`` itself; the exit code
then has nothing left to do.

``install(app)`` does the same for an app left as it is: every route's and
every dependency's ``fastapi.BackgroundTasks`` parameter gets offload's
``BackgroundTasks`` through this very dependency (same order, same records,
one instance per request, shared with any ``OffloadTasks`` of the request).
FastAPI offers no public hook for this: a ``BackgroundTasks`` parameter is
not a dependency (``app.dependency_overrides[BackgroundTasks]`` is silently
ignored), and ``solve_dependencies`` makes a ``BackgroundTasks()`` for every
dependant whose ``background_tasks_param_name`` is set. So ``install``
rewrites each route's dependant tree, a FastAPI internal that has kept its
shape (``Dependant.dependencies``, ``background_tasks_param_name``,
``get_dependant(path=, call=, name=)``) from 0.115 (the oldest version
offload supports) to 0.165, where it is tested: the parameter becomes a
sub-dependency on ``offload_tasks`` of the same name. Recent FastAPI builds
the routes of ``include_router`` lazily, each with dependants of its own
(``effective_candidates()`` of a private route class): ``install`` has them
built and rewrites them too. It does so at once, and again when the app
builds its middleware stack (its first request or its lifespan), for routes
included after ``install``; routes added to an included router after the app
started serving are missed. Not rewritten: the
parameters of functions in ``app.dependency_overrides`` (FastAPI builds their
dependants per request) and of WebSocket routes; those keep FastAPI's own
in-process ``BackgroundTasks``.

FastAPI is optional for offload: this module is the only one that imports it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, MutableMapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Annotated, Any

try:
    from fastapi import Depends, FastAPI, Request
    from fastapi.dependencies.models import Dependant
    from fastapi.dependencies.utils import get_dependant
    from starlette.background import BackgroundTasks as InProcessTasks
    from starlette.types import ASGIApp
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("server.fastapi needs FastAPI: pip install fastapi") from exc

from executor.client.background import BackgroundTasks

log = logging.getLogger("offload.server")

__all__ = ["OffloadTasks", "install", "offload_tasks"]


class _Endpoint:
    """Whether the route function returned normally (``None`` when unknown)."""

    returned: bool | None = None

    def exit(self, exc_type: type[BaseException] | None, exc: BaseException | None,
             tb: TracebackType | None) -> None:
        self.returned = exc_type is None


def _watch_endpoint(scope: MutableMapping[str, Any]) -> _Endpoint:
    # FastAPI closes this exit stack as the route function ends, before the
    # response is sent; an exception seen at ``yield`` afterwards comes from
    # sending the response or from its own background task. Older FastAPI
    # versions have no such stack: the outcome stays unknown.
    endpoint = _Endpoint()
    stack = scope.get("fastapi_function_astack")
    if isinstance(stack, AsyncExitStack):
        stack.push(endpoint.exit)
    return endpoint


class FallbackTasks(BackgroundTasks):
    """``BackgroundTasks`` that run in this process, after the response, the calls
    ``add_task`` refuses (``install(app, in_process_fallback=True)``), as
    FastAPI runs its own; each such function is logged once as a warning."""

    def __init__(self) -> None:
        super().__init__()
        self.in_process = InProcessTasks()

    def add_task(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Add a durable call, or, if it cannot be one, an in-process call."""
        try:
            super().add_task(fn, *args, **kwargs)
        except TypeError as exc:
            _warn_once(fn, exc)
            self.in_process.add_task(fn, *args, **kwargs)


_warned: set[object] = set()
_MAX_WARNED = 1024


def _warn_once(fn: Callable[..., Any], why: TypeError) -> None:
    # One warning per function, not per call: a lambda in a route is a new
    # object each request, but keeps its code object.
    target = getattr(fn, "func", fn)  # functools.partial
    target = getattr(target, "__func__", target)  # bound method
    key = getattr(target, "__code__", None) or getattr(target, "__qualname__", None) or type(fn)
    if key in _warned or len(_warned) >= _MAX_WARNED:
        return
    _warned.add(key)
    log.warning("%s; it runs in this web process instead, after the response, as FastAPI "
                "runs its BackgroundTasks: not durable, not retried (install(app, "
                "in_process_fallback=True))", why)


def _dependency(make: Callable[[], BackgroundTasks], name: str,
                doc: str) -> Callable[[Request], AsyncIterator[BackgroundTasks]]:
    async def dependency(request: Request) -> AsyncIterator[BackgroundTasks]:
        tasks = make()
        endpoint = _watch_endpoint(request.scope)
        try:
            yield tasks
        except BaseException:
            if endpoint.returned and tasks.pending_count():
                try:
                    await tasks()
                except Exception:
                    log.exception("%d background call(s) of %s %s were not handed off and "
                                  "are lost", tasks.pending_count(), request.method,
                                  request.url.path)
            elif endpoint.returned is None and tasks.pending_count():
                # This FastAPI cannot tell whether the route raised or, after it
                # returned, the response did: the calls go as a failed route's do.
                log.warning("%d background call(s) of %s %s discarded: the request failed, "
                            "and this FastAPI (before 0.121) cannot tell whether the route "
                            "had returned; await tasks.submit() in the route to keep them",
                            tasks.pending_count(), request.method, request.url.path)
            raise
        await tasks()
        if isinstance(tasks, FallbackTasks):
            await tasks.in_process()

    dependency.__name__ = dependency.__qualname__ = name
    dependency.__doc__ = doc
    return dependency


offload_tasks = _dependency(
    BackgroundTasks, "offload_tasks",
    """The dependency behind ``OffloadTasks``: a fresh ``BackgroundTasks`` per
    request, handed off in the dependency's exit code (see the module docstring).""")
offload_tasks_or_in_process = _dependency(
    FallbackTasks, "offload_tasks_or_in_process",
    """``offload_tasks`` with ``FallbackTasks``: what ``install(app,
    in_process_fallback=True)`` gives ``fastapi.BackgroundTasks`` parameters.""")


OffloadTasks = Annotated[BackgroundTasks, Depends(offload_tasks)]
"""A route parameter ``tasks: OffloadTasks`` gets offload's ``BackgroundTasks``."""


def install(app: FastAPI, *, in_process_fallback: bool = False) -> None:
    """Make the ``fastapi.BackgroundTasks`` of every route and dependency of
    ``app`` offload's: durable tasks, in the order added, handed off as
    ``OffloadTasks`` hands them off. Call it once the routes are declared
    (routes included later are rewritten when the app starts serving).

    ``add_task`` then refuses what offload cannot make durable (lambdas,
    closures, bound methods, arguments that cannot be encoded) with its usual
    ``TypeError``; with ``in_process_fallback=True`` such calls run in this
    process after the response instead, as FastAPI would run them, each
    function logged once as a warning. Calling ``install`` again on the same
    app does nothing; with the other ``in_process_fallback`` it raises
    ``ValueError``. See the module docstring for how, and what it misses.
    """
    dependency = offload_tasks_or_in_process if in_process_fallback else offload_tasks
    done = getattr(app.state, "offload_install", None)
    if done is not None:
        if done is not dependency:
            raise ValueError("install(app) was already called on this app with "
                             f"in_process_fallback={not in_process_fallback}")
        return
    app.state.offload_install = dependency
    _rewrite_routes(app.router.routes, dependency)
    if app.middleware_stack is None:  # not serving yet: rewrite again when it starts
        app.add_middleware(_rewrite_on_start, routes=app.router.routes, dependency=dependency)


def _rewrite_on_start(app: ASGIApp, *, routes: list[Any],
                      dependency: Callable[..., Any]) -> ASGIApp:
    """A "middleware" that rewrites the routes as the app builds its stack,
    and adds nothing to it (it returns the app it wraps)."""
    _rewrite_routes(routes, dependency)
    return app


def _rewrite_routes(routes: Iterable[Any], dependency: Callable[..., Any]) -> None:
    for route in routes:
        dependant = getattr(route, "dependant", None)  # an APIRoute, or an included one
        if isinstance(dependant, Dependant):
            _rewrite(dependant, getattr(route, "path_format", "") or "", dependency)
        # A Mount (a sub-app or router) has routes of its own.
        _rewrite_routes(getattr(route, "routes", None) or (), dependency)
        # Since FastAPI 0.16x, include_router adds one route that builds the
        # included routes, with dependants of their own, on first use: build them now.
        for lazy in ("effective_candidates", "effective_low_priority_routes"):
            build = getattr(route, lazy, None)
            if callable(build):
                _rewrite_routes(build(), dependency)


def _rewrite(dependant: Dependant, path: str, dependency: Callable[..., Any]) -> None:
    """Turn ``dependant``'s ``BackgroundTasks`` parameter, and its sub-dependencies',
    into a sub-dependency on ``dependency`` with the parameter's name.
    Idempotent: a rewritten dependant has no such parameter left."""
    for sub in dependant.dependencies:
        _rewrite(sub, path, dependency)
    name = dependant.background_tasks_param_name
    if name is not None:
        dependant.background_tasks_param_name = None
        dependant.dependencies.append(
            get_dependant(path=dependant.path or path, call=dependency, name=name))
