"""Real gunicorn with config/gunicorn.conf.py: the HTTP API end to end."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.support.procs import Env, ServerHandle, pid_alive, session_pids, wait_for


def test_submit_and_poll_to_succeeded(server: ServerHandle) -> None:
    status, rec, headers = server.http("POST", "/tasks", {"kind": "echo", "args": [1, "two"],
                                                          "kwargs": {"three": 3.0}})
    assert status == 202
    assert headers["location"] == f"/tasks/{rec['id']}"
    assert rec["status"] in ("pending", "running", "succeeded")
    done = server.wait_task(rec["id"])
    assert done["status"] == "succeeded"
    assert done["result"] == {"args": [1, "two"], "kwargs": {"three": 3.0}}
    assert done["attempts"] == 1
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]
    # list and stats see it
    status, page, _ = server.http("GET", "/tasks?status=succeeded&kind=echo")
    assert status == 200 and rec["id"] in [t["id"] for t in page["tasks"]]
    status, stats, _ = server.http("GET", "/queue/stats")
    assert status == 200 and stats["counts"]["succeeded"] >= 1
    assert len(stats["executors"]) == 2


def test_retry_after_while_unfinished(server: ServerHandle) -> None:
    _, rec, _ = server.http("POST", "/tasks", {"kind": "gate", "args": ["retry-after"]})
    status, got, headers = server.http("GET", f"/tasks/{rec['id']}")
    assert status == 200
    assert got["status"] in ("pending", "running")  # held until the gate opens
    assert int(headers["retry-after"]) >= 1
    (server.env.trace_dir / "retry-after").write_text("open\n")  # open the gate
    done = server.wait_task(rec["id"])
    assert done["status"] == "succeeded"
    _, _, headers = server.http("GET", f"/tasks/{done['id']}")
    assert "retry-after" not in {k.lower() for k in headers}


@pytest.mark.parametrize(("raw", "status", "code", "field"), [
    (b"{not json", 400, "malformed_json", None),
    (json.dumps({"kind": "send_emial"}).encode(), 422, "unknown_kind", "kind"),
    (json.dumps({"kind": "echo", "args": "notalist"}).encode(), 422, None, "args"),
    (json.dumps({"kind": "echo", "max_retries": -1}).encode(), 422, None, "max_retries"),
    (json.dumps({"kind": "echo", "color": "red"}).encode(), 422, None, "color"),
])
def test_bad_submissions_are_refused_with_json_errors(server: ServerHandle, raw: bytes,
                                                      status: int, code: str | None,
                                                      field: str | None) -> None:
    got, body, _ = server.http("POST", "/tasks", raw=raw)
    assert got == status, body
    assert set(body["error"]) >= {"code", "message"}
    if code:
        assert body["error"]["code"] == code
    if field:
        assert body["error"]["field"] == field
    _, stats, _ = server.http("GET", "/queue/stats")
    assert sum(stats["counts"].values()) == 0, "nothing may be stored"


def test_unknown_kind_lists_close_matches(server: ServerHandle) -> None:
    _, body, _ = server.http("POST", "/tasks", {"kind": "ech"})
    assert "did you mean: echo" in body["error"]["message"]


def test_404_413_and_409(server: ServerHandle) -> None:
    status, body, _ = server.http("GET", "/tasks/nope")
    assert status == 404 and body["error"]["code"] == "not_found"
    # Announce a body over max_body_bytes: the answer comes before any of it is sent.
    with socket.create_connection(("127.0.0.1", server.env.port), timeout=30) as s:
        s.sendall(b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 5000000\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = s.recv(65536)  # head and body may come in separate writes
            if not chunk:
                break
            reply += chunk
    head, _, payload = reply.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413")
    assert json.loads(payload)["error"]["code"] == "too_large"
    _, rec, _ = server.http("POST", "/tasks", {"kind": "noop"})
    server.wait_task(rec["id"])
    status, body, _ = server.http("DELETE", f"/tasks/{rec['id']}")
    assert status == 409


def test_cancel_pending_task(env: Env) -> None:
    env.write_config(executors=1)
    srv = ServerHandle(env)
    try:
        _, blocker, _ = srv.http("POST", "/tasks", {"kind": "sleep", "args": [2]})
        _, victim, _ = srv.http("POST", "/tasks", {"kind": "noop", "delay_s": 30})
        status, rec, _ = srv.http("DELETE", f"/tasks/{victim['id']}")
        assert status == 200 and rec["status"] == "cancelled"
        srv.wait_task(blocker["id"])
    finally:
        srv.stop()


def test_bearer_token(env: Env) -> None:
    env.write_config(auth_token="s3cret")
    srv = ServerHandle(env, ready=False)
    try:
        wait_for(lambda: srv.http("GET", "/readyz",
                                  headers={"authorization": "Bearer s3cret"})[0] == 200, 60)
        assert srv.http("GET", "/healthz")[0] == 200
        status, body, headers = srv.http("POST", "/tasks", {"kind": "noop"})
        assert status == 401 and body["error"]["code"] == "unauthorized"
        assert headers.get("www-authenticate", headers.get("WWW-Authenticate", "")).startswith(
            "Bearer")
        status, _, _ = srv.http("GET", "/queue/stats", headers={"authorization": "Bearer nope"})
        assert status == 401
        status, _, _ = srv.http("POST", "/tasks", {"kind": "noop"},
                                headers={"authorization": "Bearer s3cret"})
        assert status == 202
    finally:
        srv.stop()


def test_50_clients_2000_tasks_all_accounted_for(env: Env) -> None:
    env.write_config(workers=3)
    srv = ServerHandle(env)
    ids: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        for i in range(40):
            body = json.dumps({"kind": "echo", "args": [n, i]}).encode()
            req = urllib.request.Request(env.url + "/tasks", data=body, method="POST",
                                         headers={"content-type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    rid = json.loads(resp.read())["id"]
                with lock:
                    ids.append(rid)
            except Exception as exc:
                with lock:
                    errors.append(repr(exc))

    try:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert errors == []
        assert len(ids) == 2000 and len(set(ids)) == 2000
        wait_for(lambda: srv.http("GET", "/queue/stats")[1]["counts"]["succeeded"] == 2000, 120,
                 what="2,000 tasks to succeed")
        _, stats, _ = srv.http("GET", "/queue/stats")
        assert sum(stats["counts"].values()) == 2000
    finally:
        srv.stop()


def test_pool_killed_is_back_and_nothing_accepted_is_lost(server: ServerHandle) -> None:
    first = server.pool_pid()
    assert first is not None
    accepted = [server.http("POST", "/tasks", {"kind": "sleep", "args": [0.05]})[1]["id"]
                for _ in range(20)]
    os.kill(first, signal.SIGKILL)
    # Submissions while the pool is down get 503 (never a false 202); retry until accepted.
    def submit() -> str | None:
        status, rec, _ = server.http("POST", "/tasks", {"kind": "noop"})
        assert status in (202, 503), rec
        return rec["id"] if status == 202 else None
    accepted.append(wait_for(submit, 30, what="the pool to be back"))
    second = server.pool_pid()
    assert second is not None and second != first
    for task_id in accepted:
        assert server.wait_task(task_id, 60)["status"] == "succeeded"


def test_503_with_json_while_the_pool_is_down(server: ServerHandle) -> None:
    # Hold the keeper so it cannot respawn the pool, then kill the pool: the
    # HTTP workers must answer 503 with a JSON error, never hang or 202.
    keeper = next(pid for pid in session_pids(server.pid)
                  if b"executor.pool.keeper" in Path(f"/proc/{pid}/cmdline").read_bytes())
    pool = server.pool_pid()
    assert pool is not None
    os.kill(keeper, signal.SIGSTOP)
    try:
        os.kill(pool, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pool), 10, what="the pool to die")
        for method, path, body in (("POST", "/tasks", {"kind": "noop"}),
                                   ("GET", "/queue/stats", None), ("GET", "/readyz", None)):
            status, err, headers = server.http(method, path, body)
            assert status == 503, (path, status, err)
            assert err["error"]["code"] == "pool_unavailable", err
            assert headers["retry-after"] == "1"
    finally:
        os.kill(keeper, signal.SIGCONT)
    wait_for(lambda: server.http("GET", "/readyz")[0] == 200, 30, what="the pool to be back")
    status, rec, _ = server.http("POST", "/tasks", {"kind": "noop"})
    assert status == 202 and server.wait_task(rec["id"])["status"] == "succeeded"


def test_sigterm_to_master_leaves_no_process(env: Env) -> None:
    srv = ServerHandle(env)
    assert len(session_pids(srv.pid)) >= 6  # master, 2 workers, keeper, pool, template, executors
    srv.signal(signal.SIGTERM)
    assert srv.popen.wait(60) == 0
    wait_for(lambda: session_pids(srv.pid) == [], 30, what="every process to exit")
    srv.stop()


def test_master_killed_leaves_no_orphan(env: Env) -> None:
    srv = ServerHandle(env)
    pool_pid = srv.pool_pid()
    assert pool_pid is not None
    srv.signal(signal.SIGKILL)
    srv.popen.wait(10)
    wait_for(lambda: not pid_alive(pool_pid), 30, what="the pool to exit after the master died")
    wait_for(lambda: session_pids(srv.pid) == [], 60, what="every process to exit")
    srv.stop()


def test_config_error_names_file_key_and_accepted_values(env: Env, tmp_path: Path) -> None:
    env.write_config(executors="many")
    srv = ServerHandle(env, ready=False)
    try:
        assert srv.popen.wait(60) != 0
        out = srv.output()
        assert str(env.config_path) in out and "'executors'" in out and "integer" in out
    finally:
        srv.stop()
