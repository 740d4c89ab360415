"""The README's FastAPI and Starlette examples, served as ``make example-*``
serves them (the app beside offload's routes, under real gunicorn): the
registration answers 201, then the welcome email and the audit line are
written by executors, each call with its own record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.procs import Env, ServerHandle, running, wait_for


@pytest.mark.parametrize("name", ["fastapi", "starlette"])
def test_registration_example_sends_the_email_and_writes_the_audit_line(
        tmp_path: Path, name: str) -> None:
    env = Env(tmp_path, app=f"examples.{name}_app:app",
              task_modules=["examples.tasks", f"examples.{name}_app"])
    outbox, audit_log = tmp_path / "outbox", tmp_path / "audit.log"
    env.extra_env = {"OFFLOAD_EXAMPLE_OUTBOX": str(outbox),
                     "OFFLOAD_EXAMPLE_HEARTBEAT_LOG": str(tmp_path / "heartbeat.log"),
                     "OFFLOAD_EXAMPLE_AUDIT_LOG": str(audit_log)}
    with running(lambda: ServerHandle(env)) as server:
        status, body, _ = server.http("POST", "/register", {"email": "ada@example.com"})
        assert status == 201, body
        status, _, _ = server.http("POST", "/register", {"email": "not an address"})
        assert status in (400, 422)  # each framework's own validation error
        lines = wait_for(lambda: audit_log.exists() and audit_log.read_text().splitlines(),
                         30, what="the audit line")
        assert [json.loads(line)["email"] for line in lines] == ["ada@example.com"]
        emails = wait_for(lambda: list(outbox.glob("*.eml")), 30, what="the welcome email")
        assert len(emails) == 1 and "ada@example.com" in emails[0].read_text()
        for kind in ("send_email", f"examples.{name}_app.audit"):  # one record per call
            wait_for(lambda kind=kind: [t["status"] for t in server.http(
                "GET", f"/tasks?kind={kind}")[1]["tasks"]] == ["succeeded"], 30,
                what=f"the {kind} record to say succeeded")
