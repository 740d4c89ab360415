"""Registration with FastAPI and offload: answer 201 at once; after the response,
send the welcome email and write an audit line, durably, in offload's executors.

Run it from the repository root (one command; offload's routes are served too)::

    make example-fastapi

which installs the ``examples`` extra into ``.venv`` and runs
``OFFLOAD_APP=examples.fastapi_app:app OFFLOAD_TASK_MODULES=examples.tasks,examples.fastapi_app
.venv/bin/gunicorn -c config/gunicorn.conf.py``.

    curl -i localhost:8000/register -H 'content-type: application/json' \\
         -d '{"email": "ada@example.com"}'

The email lands in ``var/outbox/`` and the audit line in ``var/audit.log``;
each call has its own record at ``GET /tasks?kind=send_email``. See
examples/README.md for the plain FastAPI version this replaces.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from fastapi import FastAPI
from pydantic import BaseModel, Field

from examples.tasks import send_email
from server.fastapi import OffloadTasks

AUDIT_LOG = Path(os.environ.get("OFFLOAD_EXAMPLE_AUDIT_LOG", "var/audit.log"))


def audit(event: str, email: str) -> None:
    """Append one JSON line to the audit log.

    A plain module-level function, not a ``@task``: offload runs it by its
    import path (``examples.fastapi_app:audit``).
    """
    AUDIT_LOG.parent.mkdir(parents=True, exist_ok=True)
    with AUDIT_LOG.open("a") as f:
        f.write(json.dumps({"at": time.time(), "event": event, "email": email}) + "\n")


class Signup(BaseModel):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)


app = FastAPI(title="offload example: registration (FastAPI)")


@app.post("/register", status_code=201)
def register(signup: Signup, tasks: OffloadTasks) -> dict[str, str]:
    # ... create the account here ...
    tasks.add_task(send_email, signup.email, "Welcome!", body="Thanks for signing up.")
    tasks.add_task(audit, "signup", signup.email)
    return {"email": signup.email, "status": "registered"}
