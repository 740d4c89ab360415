"""FastAPI's background-tasks tutorial app (a dependency and the route each add
a call), with plain ``fastapi.BackgroundTasks`` and one line more:
``install(app)``. Served by offload's gunicorn in
tests/integration/test_fastapi_install.py (``app =
"tests.support.installed_app:app"``); ``write_log`` appends to ``log.txt`` in
``$OFFLOAD_TEST_DIR`` (the test's trace directory) instead of the working
directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI

from server.fastapi import install


def write_log(message: str) -> None:
    with open(Path(os.environ.get("OFFLOAD_TEST_DIR", "/tmp")) / "log.txt", mode="a") as log:
        log.write(message)


def get_query(background_tasks: BackgroundTasks, q: str | None = None) -> str | None:
    if q:
        message = f"found query: {q}\n"
        background_tasks.add_task(write_log, message)
    return q


app = FastAPI()


@app.post("/send-notification/{email}")
async def send_notification(
    email: str, background_tasks: BackgroundTasks, q: Annotated[str, Depends(get_query)]
) -> dict[str, str]:
    message = f"message to {email}\n"
    background_tasks.add_task(write_log, message)
    return {"message": "Message sent"}


install(app)
