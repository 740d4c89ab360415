"""Every ``offload`` command against a live server (real gunicorn, pool,
executors), run as the installed console script: exit codes, and
``--output json`` parsed from stdout (which holds nothing else)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import Env, Proc, ServerHandle, call, wait_for

OFFLOAD = str(Path(sys.executable).with_name("offload"))
TOKEN = "cli-s3cret"


class Run:
    """One finished ``offload`` run."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


def offload(env: Env, *argv: str, token: str | None = TOKEN, stdin: str = "",
            timeout_s: float = 60) -> Run:
    environ = env.environ()
    environ["OFFLOAD_URL"] = env.url
    if token is not None:
        environ["OFFLOAD_AUTH_TOKEN"] = token
    return Run(subprocess.run([OFFLOAD, *argv], env=environ, input=stdin, capture_output=True,
                              text=True, timeout=timeout_s, check=False))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    env = Env(tmp_path_factory.mktemp("cli"), auth_token=TOKEN)
    server = ServerHandle(env, ready=False)  # /readyz needs the token: waited for below
    try:
        wait_for(lambda: server.http("GET", "/readyz", headers={
            "authorization": f"Bearer {TOKEN}"})[0] == 200, 90, what="gunicorn /readyz")
        yield server
    finally:
        server.stop()


def test_version_and_usage_errors(live: ServerHandle) -> None:
    r = offload(live.env, "--version")
    assert r.code == 0 and r.stdout.startswith("offload ")
    assert offload(live.env, "tasks", "submit", "echo", "not json").code == 2
    assert offload(live.env, "tasks", "submit", "echo", "{}").code == 2  # ARGS is an array
    assert offload(live.env, "tasks", "retry").code == 2  # an id or --failed
    assert offload(live.env, "tasks", "list", "--bogus").code == 2
    assert offload(live.env, "nonsense").code == 2


def test_check_and_status(live: ServerHandle) -> None:
    r = offload(live.env, "check", "-o", "json", token=None)  # /healthz needs no token
    assert (r.code, r.json()) == (0, {"status": "ok"})
    r = offload(live.env, "check", "--ready", "-o", "json")
    assert r.code == 0 and r.json()["status"] == "ready"
    assert offload(live.env, "status", token=None).code == 1  # 401: refused
    r = offload(live.env, "status", "-o", "json")
    assert r.code == 0
    stats = r.json()
    assert set(stats["counts"]) >= {"pending", "running", "failed"}
    assert len(stats["executors"]) == 2
    r = offload(live.env, "status")
    assert r.code == 0 and "queue depth" in r.stdout and "PID" in r.stdout
    r = offload(live.env, "status", "--watch", "--count", "2", "--interval", "0.05",
                "-o", "json")
    assert r.code == 0
    assert [set(json.loads(line)) for line in r.stdout.splitlines()] == [set(stats)] * 2


def test_submit_get_list_cancel(live: ServerHandle) -> None:
    env = live.env
    r = offload(env, "tasks", "submit", "echo", '[1, "a"]', "--kwargs", '{"k": 2}', "-o", "json")
    assert r.code == 0, r.stderr
    task_id = r.json()["id"]
    r = offload(env, "tasks", "get", task_id, "--wait", "30", "-o", "json")
    assert r.code == 0
    assert (r.json()["status"], r.json()["result"]) == (
        "succeeded", {"args": [1, "a"], "kwargs": {"k": 2}})
    r = offload(env, "tasks", "get", task_id)
    assert r.code == 0 and "succeeded" in r.stdout
    r = offload(env, "tasks", "list", "--kind", "echo", "--status", "succeeded", "-o", "json")
    assert r.code == 0 and task_id in [t["id"] for t in r.json()["tasks"]]
    assert task_id in offload(env, "tasks", "list").stdout

    r = offload(env, "tasks", "submit", "raise_value_error", "--wait", "30", "-o", "json")
    assert r.code == 1 and r.json()["status"] == "failed"  # the task failed
    assert offload(env, "tasks", "get", "no-such-task").code == 1  # 404: refused

    later = offload(env, "tasks", "submit", "echo", "--delay", "3600", "-o", "json").json()["id"]
    r = offload(env, "tasks", "cancel", later, "-o", "json")
    assert r.code == 0 and r.json()["status"] == "cancelled"
    r = offload(env, "tasks", "cancel", later)
    assert r.code == 1 and "already ended" in r.stderr and r.stdout == ""  # 409


def test_wait_that_runs_out_exits_124(live: ServerHandle) -> None:
    env = live.env
    gated = offload(env, "tasks", "submit", "gate", '["cli-gate"]', "-o", "json").json()["id"]
    r = offload(env, "tasks", "get", gated, "--wait", "0.5", "-o", "json")
    assert r.code == 124
    assert r.json()["status"] in ("pending", "running")
    (env.trace_dir / "cli-gate").touch()
    assert offload(env, "tasks", "get", gated, "--wait", "30").code == 0
    r = offload(env, "tasks", "cancel", gated, "--force")
    assert r.code == 1  # it ended: refused


def test_retry_one_and_bulk_with_confirmation(live: ServerHandle) -> None:
    env = live.env
    ids = [offload(env, "tasks", "submit", "fail_first", f'["c{i}.log", {i}]', "--wait", "30",
                   "-o", "json").json()["id"] for i in range(3)]
    r = offload(env, "tasks", "retry", ids[0], "-o", "json")
    assert r.code == 0 and (r.json()["id"], r.json()["status"]) == (ids[0], "pending")
    assert offload(env, "tasks", "get", ids[0], "--wait", "30").code == 0  # succeeded now

    r = offload(env, "tasks", "retry", "--failed", "--kind", "fail_first", stdin="n\n")
    assert r.code == 1 and "[y/N]" in r.stderr
    assert json.loads(offload(env, "tasks", "get", ids[1], "-o", "json").stdout)[
        "status"] == "failed"  # nothing done
    r = offload(env, "tasks", "retry", "--failed", "--kind", "fail_first", stdin="")
    assert r.code == 1  # no answer is no
    r = offload(env, "tasks", "retry", "--failed", "--kind", "fail_first", "--yes",
                "-o", "json")
    assert r.code == 0 and r.json()["retried"] == 2 and set(r.json()["ids"]) == set(ids[1:])
    for task_id in ids[1:]:
        assert offload(env, "tasks", "get", task_id, "--wait", "30").code == 0
    r = offload(env, "tasks", "retry", ids[0])
    assert r.code == 1 and "succeeded" in r.stderr  # 409


def test_check_against_a_stopped_server_exits_69(tmp_path: Path) -> None:
    env = Env(tmp_path)
    server = ServerHandle(env)
    try:
        assert offload(env, "check", "--ready", token=None).code == 0
    finally:
        server.stop()
    r = offload(env, "check", token=None)
    assert r.code == 69 and "unavailable" in r.stderr and r.stdout == ""
    assert offload(env, "check", "--ready", token=None).code == 69
    assert offload(env, "status", token=None).code == 69


def test_serve_and_pool_start_offload(tmp_path: Path) -> None:
    env = Env(tmp_path)
    serve = Proc([OFFLOAD, "serve"], env, "serve")
    try:
        wait_for(lambda: offload(env, "check", "--ready", token=None).code == 0, 90,
                 what="offload serve to be ready")
        # exec: the process started is gunicorn's master itself
        cmdline = Path(f"/proc/{serve.pid}/cmdline").read_bytes().split(b"\0")
        assert b"gunicorn" in cmdline
    finally:
        serve.stop()
    assert serve.popen.returncode is not None
    pool = Proc([OFFLOAD, "pool", "--config", str(env.config_path)], env, "pool")
    try:
        wait_for(lambda: _pool_up(env), 60, what="offload pool to answer")
    finally:
        pool.signal(signal.SIGTERM)
        pool.stop()


def _pool_up(env: Env) -> bool:
    if not os.path.exists(env.socket_path):
        return False
    try:
        return bool(call(env.socket_path, "health", timeout_s=1)["executors_up"] >= 1)
    except Exception:
        return False
