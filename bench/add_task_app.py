"""The app ``bench/add_task_bench.py`` serves: one background call per request,
through offload's ``BackgroundTasks`` or Starlette's own (in-process).

``GET /offload/{sync,async}`` and ``GET /inprocess/{sync,async}`` each add one
call of ``noop_sync`` (a plain ``def``) or ``noop_async`` (an ``async def``)
and answer ``200 ok`` with the calls as the response's ``background``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import starlette.background
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import executor


def noop_sync() -> None:
    """A plain ``def`` that does nothing."""


async def noop_async() -> None:
    """An ``async def`` that does nothing."""


def _route(tasks_class: Callable[[], Any], fn: Callable[[], Any]) -> Callable[..., Any]:
    async def endpoint(request: Request) -> PlainTextResponse:
        tasks = tasks_class()
        tasks.add_task(fn)
        return PlainTextResponse("ok", background=tasks)
    return endpoint


app = Starlette(routes=[
    Route("/offload/sync", _route(executor.BackgroundTasks, noop_sync)),
    Route("/offload/async", _route(executor.BackgroundTasks, noop_async)),
    Route("/inprocess/sync", _route(starlette.background.BackgroundTasks, noop_sync)),
    Route("/inprocess/async", _route(starlette.background.BackgroundTasks, noop_async)),
])
