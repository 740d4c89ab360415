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

FastAPI is optional for offload: this module is the only one that imports it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, MutableMapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Annotated, Any

try:
    from fastapi import Depends, Request
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("server.fastapi needs FastAPI: pip install fastapi") from exc

from executor.client.background import BackgroundTasks

log = logging.getLogger("offload.server")

__all__ = ["OffloadTasks", "offload_tasks"]


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


async def offload_tasks(request: Request) -> AsyncIterator[BackgroundTasks]:
    """The dependency behind ``OffloadTasks``: a fresh ``BackgroundTasks`` per
    request, handed off in the dependency's exit code (see the module docstring)."""
    tasks = BackgroundTasks()
    endpoint = _watch_endpoint(request.scope)
    try:
        yield tasks
    except BaseException:
        if endpoint.returned and tasks.pending_count():
            try:
                await tasks()
            except Exception:
                log.exception("%d background call(s) of %s %s were not handed off and are "
                              "lost", tasks.pending_count(), request.method, request.url.path)
        elif endpoint.returned is None and tasks.pending_count():
            # This FastAPI cannot tell whether the route raised or, after it
            # returned, the response did: the calls go as a failed route's do.
            log.warning("%d background call(s) of %s %s discarded: the request failed, and "
                        "this FastAPI (before 0.121) cannot tell whether the route had "
                        "returned; await tasks.submit() in the route to keep them",
                        tasks.pending_count(), request.method, request.url.path)
        raise
    await tasks()


OffloadTasks = Annotated[BackgroundTasks, Depends(offload_tasks)]
"""A route parameter ``tasks: OffloadTasks`` gets offload's ``BackgroundTasks``."""
