"""Task code and a Starlette app for the kill tests (``tests.support.chaos``).

Serve with ``app = "tests.support.chaos:app"`` and
``task_modules = ["tests.support.chaos"]``. Every run of a task or call
appends one line to ``$OFFLOAD_TEST_DIR/runs`` with a single ``write`` on
an ``O_APPEND`` descriptor, so the file survives the SIGKILL of any process
and two runs never interleave their lines:

    ``start <label> <task id> <pid> <time>`` then ``end <label> <task id> <pid> <time>``

- ``chaos_run`` (``POST /tasks`` kind): ``{"kind": "chaos_run", "args": [label]}``.
- ``POST /pair`` (Starlette, ``BackgroundTasks``): ``{"label": L}`` adds two
  calls of ``chaos_call``, labelled ``L-a`` and ``L-b``, and answers 200
  with ``{"added": 2, "pid": <the HTTP worker's pid>}``.
"""

from __future__ import annotations

import os
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from executor import BackgroundTasks, task
from executor.worker.context import current_task_id

RUNS = "runs"


def _record(event: str, label: str) -> None:
    directory = os.environ.get("OFFLOAD_TEST_DIR", "/tmp")
    line = f"{event} {label} {current_task_id()} {os.getpid()} {time.time():.6f}\n"
    fd = os.open(os.path.join(directory, RUNS), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _run(label: str, sleep_s: float) -> str:
    _record("start", label)
    time.sleep(sleep_s)
    _record("end", label)
    return label


@task(name="chaos_run", max_retries=8, retry_backoff_s=0.05, retry_backoff_max_s=0.5)
def chaos_run(label: str, sleep_s: float = 0.002) -> str:
    """Record a start, sleep ``sleep_s``, record an end."""
    return _run(label, sleep_s)


def chaos_call(label: str, sleep_s: float = 0.002) -> str:
    """The same, as a plain function added with ``BackgroundTasks.add_task``."""
    return _run(label, sleep_s)


async def pair(request: Request) -> JSONResponse:
    body = await request.json()
    label = str(body["label"])
    tasks = BackgroundTasks()
    tasks.add_task(chaos_call, f"{label}-a")
    tasks.add_task(chaos_call, f"{label}-b")
    return JSONResponse({"added": 2, "pid": os.getpid()}, status_code=200, background=tasks)


app = Starlette(routes=[Route("/pair", pair, methods=["POST"])])
