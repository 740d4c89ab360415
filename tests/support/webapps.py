"""A FastAPI app and a Starlette app that use offload's ``BackgroundTasks``,
for the integration tests (served with the setting
``app = "tests.support.webapps:fastapi_app"``; the Starlette app is mounted at
``/st``).

The step functions below are plain module-level functions, *not* ``@task``
kinds: executors find them by ``ref`` (module:qualname), as they would a
user's. Each appends ``"<label> <task id>"`` to a trace file in
``$OFFLOAD_TEST_DIR``, so a test reads both the order and the ids.

Routes take ``{"steps": [[name, *args], ...]}`` and add one call per step:

- ``POST /fa/steps``: ``OffloadTasks``, flushed by the dependency's exit code.
- ``POST /fa/steps/explicit``: ``await tasks.submit()`` in the route; returns the ids.
- ``POST /fa/pitfall``: returns its own ``JSONResponse(background=...)`` (an
  in-process Starlette task) and also adds to FastAPI's injected
  ``BackgroundTasks``, which FastAPI then drops (fastapi/fastapi#11215).
- ``POST /fa/raises``: adds the steps, then fails with 409.
- ``POST /fa/refusals``: tries every call ``add_task`` refuses; their messages.
- ``POST /st/steps``: Starlette, ``Response(background=tasks)``.
- ``POST /st/task``: Starlette, one ``BackgroundTask`` as ``background``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import fastapi
from fastapi import Body, FastAPI, HTTPException
from starlette.applications import Starlette
from starlette.background import BackgroundTask as StarletteTask
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from executor import BackgroundTask, BackgroundTasks
from executor.worker.context import current_task_id
from server.fastapi import OffloadTasks
from tests.support.tasks import segfault


def _append(trace: str, line: str) -> None:
    directory = Path(os.environ.get("OFFLOAD_TEST_DIR", "/tmp"))
    with open(directory / trace, "a") as f:
        f.write(line + "\n")


def step(trace: str, label: str, sleep_s: float = 0.0) -> str:
    """Sleep ``sleep_s``, then trace ``label``."""
    time.sleep(sleep_s)
    _append(trace, f"{label} {current_task_id()}")
    return label


async def async_step(trace: str, label: str) -> str:
    """An ``async def`` step."""
    await asyncio.sleep(0)
    _append(trace, f"{label} {current_task_id()}")
    return label


def fail_step(trace: str, label: str) -> None:
    """Trace, then fail (every attempt)."""
    _append(trace, f"{label} {current_task_id()}")
    raise RuntimeError(f"{label} fails on purpose")


def flaky_step(trace: str, label: str, succeed_on: int) -> int:
    """Trace each attempt; fail until attempt ``succeed_on``."""
    _append(trace, f"{label} {current_task_id()}")
    attempts = sum(1 for line in (Path(os.environ.get("OFFLOAD_TEST_DIR", "/tmp")) / trace)
                   .read_text().splitlines() if line.startswith(label + " "))
    if attempts < succeed_on:
        raise ConnectionError(f"{label}: attempt {attempts} fails")
    return attempts


def blocked_step(trace: str, label: str, release: str) -> str:
    """Trace ``<label>-start``, wait until the file ``release`` exists, trace ``<label>-end``."""
    _append(trace, f"{label}-start {current_task_id()}")
    deadline = time.monotonic() + 60
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.01)
    _append(trace, f"{label}-end {current_task_id()}")
    return label


def unwanted_step(trace: str, label: str) -> None:
    """Used only where the calls must be discarded: its kind must never be stored."""
    _append(trace, f"{label} {current_task_id()}")


def in_process(trace: str, label: str) -> None:
    """Run by Starlette in the HTTP worker (not an offload call)."""
    _append(trace, f"{label} in-process")


STEPS: dict[str, Callable[..., Any]] = {
    "step": step, "async_step": async_step, "fail": fail_step, "flaky": flaky_step,
    "blocked": blocked_step, "segfault": segfault, "unwanted": unwanted_step,
}


def _add_steps(tasks: BackgroundTasks, steps: list[list[Any]]) -> None:
    for name, *args in steps:
        tasks.add_task(STEPS[name], *args)


# -- FastAPI -------------------------------------------------------------------

fastapi_app = FastAPI()
Steps = Annotated[list[list[Any]], Body(embed=True)]


@fastapi_app.post("/fa/steps", status_code=201)
def fa_steps(tasks: OffloadTasks, steps: Steps) -> dict[str, int]:
    _add_steps(tasks, steps)
    return {"added": len(tasks)}


@fastapi_app.post("/fa/steps/explicit", status_code=201)
async def fa_steps_explicit(tasks: OffloadTasks, steps: Steps) -> dict[str, list[str]]:
    _add_steps(tasks, steps)
    return {"ids": await tasks.submit()}


@fastapi_app.post("/fa/pitfall")
async def fa_pitfall(tasks: OffloadTasks, injected: fastapi.BackgroundTasks,
                     trace: Annotated[str, Body()], steps: Steps) -> JSONResponse:
    _add_steps(tasks, steps)
    injected.add_task(in_process, trace, "fastapi-injected")
    return JSONResponse({"added": len(tasks)}, status_code=201,
                        background=StarletteTask(in_process, trace, "response-background"))


@fastapi_app.post("/fa/raises")
def fa_raises(tasks: OffloadTasks, steps: Steps) -> None:
    _add_steps(tasks, steps)
    raise HTTPException(409, "refused after adding calls")


class _Mailer:
    def send(self, to: str) -> None: ...


def _ghost() -> None: ...


_ghost.__qualname__ = "no_such_function"  # not importable under its own name


@fastapi_app.post("/fa/refusals")
def fa_refusals(tasks: OffloadTasks) -> dict[str, str]:
    """Every call ``add_task`` refuses, as a route in a real HTTP worker meets
    them: ``{case: the TypeError's message}``; nothing is added."""
    def closure() -> None: ...

    cases: dict[str, Callable[[], None]] = {
        "lambda": lambda: tasks.add_task(lambda: None),
        "closure": lambda: tasks.add_task(closure),
        "bound method": lambda: tasks.add_task(_Mailer().send, "a@b.c"),
        "not importable": lambda: tasks.add_task(_ghost),
        "unencodable": lambda: tasks.add_task(step, "t", object()),
        "signature": lambda: tasks.add_task(step, "t", "a", colour="red"),
    }
    messages = {}
    for case, add in cases.items():
        try:
            add()
        except TypeError as exc:
            messages[case] = str(exc)
    assert len(tasks) == 0
    return messages


# -- Starlette -----------------------------------------------------------------

async def st_steps(request: Request) -> JSONResponse:
    body = await request.json()
    tasks = BackgroundTasks()
    _add_steps(tasks, body["steps"])
    return JSONResponse({"added": len(tasks)}, status_code=201, background=tasks)


async def st_task(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse({"added": 1}, status_code=201,
                        background=BackgroundTask(step, body["trace"], body["label"]))


starlette_app = Starlette(routes=[Route("/steps", st_steps, methods=["POST"]),
                                  Route("/task", st_task, methods=["POST"])])
fastapi_app.mount("/st", starlette_app)
