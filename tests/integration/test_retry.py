"""Running failed and cancelled tasks again, under real gunicorn, pool and executors."""

from __future__ import annotations

from typing import Any

from tests.support.procs import ServerHandle, wait_for

# Values whose JSON rendering would differ from what was sent (a big int, a
# float that is whole, unicode, nesting): the re-run must get the stored call.
VALUE = {"n": 2**63 - 1, "f": 2.0, "s": "zoë", "nested": [[1, {"a": None}]]}


def submit(server: ServerHandle, body: dict[str, Any]) -> str:
    status, rec, _ = server.http("POST", "/tasks", body)
    assert status == 202, rec
    return str(rec["id"])


def test_a_failed_task_runs_again_from_its_stored_call_and_succeeds(
        server: ServerHandle) -> None:
    task_id = submit(server, {"kind": "fail_first", "args": ["ff.log", VALUE]})
    first = server.wait_task(task_id)
    assert first["status"] == "failed" and first["attempts"] == 1
    assert "on purpose" in first["error"]["message"]

    status, rec, headers = server.http("POST", f"/tasks/{task_id}/retry")
    assert status == 202, rec
    assert {k.lower(): v for k, v in headers.items()}["location"] == f"/tasks/{task_id}"
    assert (rec["id"], rec["status"], rec["attempts"], rec["error"], rec["finished_at"]) == (
        task_id, "pending", 0, None, None)

    again = server.wait_task(task_id)
    assert (again["status"], again["attempts"], again["result"]) == ("succeeded", 1, VALUE)
    assert server.env.trace("ff.log") == ["run", "run"]
    # A succeeded task is done with: it is not run again.
    status, err, _ = server.http("POST", f"/tasks/{task_id}/retry")
    assert status == 409 and err["error"]["code"] == "conflict"
    assert server.http("POST", "/tasks/nope/retry")[0] == 404


def test_bulk_retry_by_kind_and_409_for_unfinished_tasks(server: ServerHandle) -> None:
    ours = [submit(server, {"kind": "fail_first", "args": [f"b{i}.log", i]}) for i in range(3)]
    other = submit(server, {"kind": "raise_value_error"})
    assert all(server.wait_task(t)["status"] == "failed" for t in [*ours, other])

    # A task that is really running (it reported progress) cannot be re-run.
    running = submit(server, {"kind": "gated_progress", "args": ["g"]})
    wait_for(lambda: (server.http("GET", f"/tasks/{running}")[1]["progress"] or {}).get(
        "value") == 0.25, 30, what="the task to report progress")
    status, err, _ = server.http("POST", f"/tasks/{running}/retry")
    assert status == 409 and "running" in err["error"]["message"]
    # Nor can a pending one.
    later = submit(server, {"kind": "echo", "delay_s": 3600})
    assert server.http("POST", f"/tasks/{later}/retry")[0] == 409

    status, body, _ = server.http("POST", "/tasks/retry", {"kind": "fail_first", "limit": 2})
    assert status == 202 and body["retried"] == 2 and set(body["ids"]) <= set(ours)
    status, body2, _ = server.http("POST", "/tasks/retry", {"kind": "fail_first"})
    assert status == 202 and body2["retried"] == 1
    assert set(body["ids"]) | set(body2["ids"]) == set(ours)
    for i, task_id in enumerate(ours):
        rec = server.wait_task(task_id)
        assert (rec["status"], rec["result"]) == ("succeeded", i)
    assert server.http("GET", f"/tasks/{other}")[1]["status"] == "failed"  # another kind
    assert server.http("POST", "/tasks/retry", {"kind": "fail_first"})[1]["retried"] == 0

    # A cancelled task runs again too, due at once.
    assert server.http("DELETE", f"/tasks/{later}")[0] == 200
    status, rec, _ = server.http("POST", f"/tasks/{later}/retry")
    assert status == 202 and rec["status"] == "pending" and rec["cancelled_by"] is None
    assert server.wait_task(later)["status"] == "succeeded"

    for gate in ("g.1", "g.2"):
        (server.env.trace_dir / gate).touch()
    assert server.wait_task(running)["status"] == "succeeded"
