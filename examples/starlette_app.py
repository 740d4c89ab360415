"""Registration with Starlette and offload: answer 201 at once; after the response,
send the welcome email and write an audit line, durably, in offload's executors.

Run it from the repository root (one command; offload's routes are served too)::

    make example-starlette

which installs the ``examples`` extra into ``.venv`` and runs
``OFFLOAD_APP=examples.starlette_app:app OFFLOAD_TASK_MODULES=examples.tasks,examples.starlette_app
.venv/bin/gunicorn -c config/gunicorn.conf.py``.

    curl -i localhost:8000/register -H 'content-type: application/json' \\
         -d '{"email": "ada@example.com"}'

The email lands in ``var/outbox/`` and the audit line in ``var/audit.log``.
See examples/README.md for the plain Starlette version this replaces.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from examples.tasks import send_email
from executor import BackgroundTasks

AUDIT_LOG = Path(os.environ.get("OFFLOAD_EXAMPLE_AUDIT_LOG", "var/audit.log"))
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def audit(event: str, email: str) -> None:
    """Append one JSON line to the audit log.

    A plain module-level function, not a ``@task``: offload runs it by its
    import path (``examples.starlette_app:audit``).
    """
    AUDIT_LOG.parent.mkdir(parents=True, exist_ok=True)
    with AUDIT_LOG.open("a") as f:
        f.write(json.dumps({"at": time.time(), "event": event, "email": email}) + "\n")


async def register(request: Request) -> JSONResponse:
    try:
        email = (await request.json())["email"]
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"error": "send {\"email\": ...}"}, status_code=400)
    if not isinstance(email, str) or not EMAIL.match(email):
        return JSONResponse({"error": "email is not an email address"}, status_code=422)
    # ... create the account here ...
    tasks = BackgroundTasks()
    tasks.add_task(send_email, email, "Welcome!", body="Thanks for signing up.")
    tasks.add_task(audit, "signup", email)
    return JSONResponse({"email": email, "status": "registered"}, status_code=201,
                        background=tasks)


app = Starlette(routes=[Route("/register", register, methods=["POST"])])
