"""An app with plain ``fastapi.BackgroundTasks`` and ``server.fastapi.install(app)``,
served by offload's real gunicorn (pool, executors, SQLite): each call of the
dependency and the route is stored as an offload task, runs in an executor in
the order added, and succeeds, with its record in ``GET /tasks``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.procs import Env, ServerHandle, running, wait_for

KIND = "tests.support.tutorial_apps.write_log"


def test_installed_app_stores_its_background_calls_as_tasks_that_succeed(
        tmp_path: Path) -> None:
    env = Env(tmp_path, app="tests.support.installed_app:app")
    log = env.trace_dir / "log.txt"
    with running(lambda: ServerHandle(env)) as server:
        status, body, _ = server.http("POST", "/send-notification/foo@example.com?q=some-query")
        assert (status, body) == (200, {"message": "Message sent"})

        def both_succeeded() -> list[dict[str, Any]] | None:
            tasks: list[dict[str, Any]] = server.http("GET", f"/tasks?kind={KIND}")[1]["tasks"]
            done = len(tasks) == 2 and all(t["status"] == "succeeded" for t in tasks)
            return tasks if done else None

        tasks = wait_for(both_succeeded, 30, what="two write_log tasks to succeed")
        assert all(t["attempts"] == 1 and t["error"] is None for t in tasks)
        # The dependency's call first, then the route's, as FastAPI orders them.
        assert log.read_text() == "found query: some-query\nmessage to foo@example.com\n"
    assert "not stored" not in server.output()
