"""FastAPI's background-tasks tutorial app ("send-notification", tutorial002 of
FastAPI's docs: a dependency and the route each add a call that appends to
``log.txt``), as its docs write it and with offload's ``OffloadTasks``.

``make_plain_app()`` builds FastAPI's version unchanged (``fastapi.BackgroundTasks``);
``offload_app`` is the same with the one annotation swapped. ``write_log`` and
the dependencies are module-level, as in the tutorial. One change: in a
process started by a test (``$OFFLOAD_TEST_DIR`` set, e.g. an executor of
tests.support.installed_app's server) ``write_log`` appends to ``log.txt``
in that trace directory rather than in the working directory (the project's
root there); in-process tests leave it unset.
"""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI

from server.fastapi import OffloadTasks


def write_log(message: str) -> None:
    with open(os.path.join(os.environ.get("OFFLOAD_TEST_DIR", "."), "log.txt"), mode="a") as log:
        log.write(message)


def get_query(background_tasks: BackgroundTasks, q: str | None = None) -> str | None:
    if q:
        message = f"found query: {q}\n"
        background_tasks.add_task(write_log, message)
    return q


def make_plain_app() -> FastAPI:
    """FastAPI's tutorial app, unedited (a new app each call: ``install`` edits one)."""
    app = FastAPI()

    @app.post("/send-notification/{email}")
    async def send_notification(
        email: str, background_tasks: BackgroundTasks, q: Annotated[str, Depends(get_query)]
    ) -> dict[str, str]:
        message = f"message to {email}\n"
        background_tasks.add_task(write_log, message)
        return {"message": "Message sent"}

    return app


def get_query_offload(background_tasks: OffloadTasks, q: str | None = None) -> str | None:
    if q:
        message = f"found query: {q}\n"
        background_tasks.add_task(write_log, message)
    return q


offload_app = FastAPI()


@offload_app.post("/send-notification/{email}")
async def send_notification(
    email: str, background_tasks: OffloadTasks, q: Annotated[str, Depends(get_query_offload)]
) -> dict[str, str]:
    message = f"message to {email}\n"
    background_tasks.add_task(write_log, message)
    return {"message": "Message sent"}
