"""Example tasks used by ``make run`` (task module ``examples.tasks``).

Submit them over HTTP, e.g.::

    curl -X POST localhost:8000/tasks -H 'content-type: application/json' \
         -d '{"kind": "send_email", "args": ["ada@example.com", "Welcome"]}'
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from pathlib import Path

from executor import Retry, progress, task

OUTBOX = Path(os.environ.get("OFFLOAD_EXAMPLE_OUTBOX", "var/outbox"))
HEARTBEAT_LOG = Path(os.environ.get("OFFLOAD_EXAMPLE_HEARTBEAT_LOG", "var/heartbeat.log"))


@task(name="send_email", max_retries=3, timeout_s=30)
def send_email(to: str, subject: str, body: str = "") -> dict[str, str]:
    """Write the email to a local outbox directory (one .eml file per message)."""
    OUTBOX.mkdir(parents=True, exist_ok=True)
    message_id = uuid.uuid4().hex
    path = OUTBOX / f"{message_id}.eml"
    path.write_text(f"To: {to}\nSubject: {subject}\nMessage-ID: <{message_id}@offload>\n\n{body}\n")
    return {"message_id": message_id, "path": str(path)}


@task(name="build_report", timeout_s=120)
def build_report(pages: int = 20, seconds_per_page: float = 0.1) -> dict[str, int]:
    """A report that takes a few seconds and reports progress page by page."""
    words = 0
    for page in range(1, pages + 1):
        time.sleep(seconds_per_page)
        words += random.randint(200, 400)
        progress(page / pages, f"rendered {page} of {pages} pages")
    return {"pages": pages, "words": words}


@task(name="flaky_webhook", max_retries=5, retry_backoff_s=0.5)
def flaky_webhook(url: str, payload: dict[str, object], fail_rate: float = 0.5) -> str:
    """A webhook call that fails at random; offload retries it with back-off."""
    if random.random() < fail_rate:
        raise ConnectionError(f"POST {url} failed: connection reset by peer")
    return f"delivered {len(json.dumps(payload))} bytes to {url}"


@task(name="rate_limited", max_retries=3)
def rate_limited(attempt_after_s: float = 1.0) -> str:
    """Asks for its own retry, as an HTTP 429 handler would."""
    raise Retry(delay_s=attempt_after_s, message="remote said 429: try again later")


@task(name="crash", max_retries=1)
def crash() -> None:
    """Segfaults the executor. offload records 'crash: SIGSEGV' and replaces it."""
    import ctypes

    ctypes.string_at(0)


@task(name="noop")
def noop() -> None:
    """Does nothing (for benchmarks)."""


@task(name="heartbeat", every_s=5)
def heartbeat(scheduled_for: float) -> str:
    """A periodic task: runs on its own every 5 s (once per slot, however many
    pools run) and appends the slot it covers to var/heartbeat.log."""
    slot = time.strftime("%H:%M:%S", time.gmtime(scheduled_for))
    line = f"slot {slot} UTC ran {time.time() - scheduled_for:.3f} s after it\n"
    HEARTBEAT_LOG.parent.mkdir(parents=True, exist_ok=True)
    with HEARTBEAT_LOG.open("a") as f:
        f.write(line)
    return line.strip()


@task(name="add")
async def add(a: float, b: float) -> float:
    """An ``async def`` task: awaited in the executor."""
    return a + b
