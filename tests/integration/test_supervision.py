"""The gunicorn master's supervision under real gunicorn: a bad edit on disk
never stops a replacement HTTP worker from booting, and a killed keeper is
replaced once its pool has stopped."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support.procs import (
    Env,
    ServerHandle,
    pid_alive,
    session_pids,
    template_pids,
    wait_for,
)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def http_workers(server: ServerHandle) -> set[int]:
    """The live HTTP worker pids (gunicorn processes but the master)."""
    return {pid for pid in session_pids(server.pid)
            if pid != server.pid and b"gunicorn" in _cmdline(pid)}


def keeper_pid(server: ServerHandle) -> int | None:
    """The live keeper's pid, if there is one."""
    return next((pid for pid in session_pids(server.pid)
                 if b"executor.pool.keeper" in _cmdline(pid)), None)


def kill_a_worker_and_wait_for_its_replacement(server: ServerHandle) -> None:
    """SIGKILL one HTTP worker; return once gunicorn has booted a new one."""
    before = wait_for(lambda: (w := http_workers(server)) and len(w) == 2 and w, 60,
                      what="2 HTTP workers")
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    new = wait_for(lambda: victim not in (w := http_workers(server)) and w - before, 60,
                   what="a replacement HTTP worker")
    wait_for_app_loaded(server, new.pop())
    assert_serving(server)


def wait_for_app_loaded(server: ServerHandle, worker: int) -> None:
    """Wait until ``worker`` has loaded its app and listens (a worker that
    fails to boot exits and gunicorn halts the master instead)."""
    wait_for(lambda: f"[{worker}] [INFO] ASGI server listening" in server.output()
             or server.popen.poll() is not None, 60, what=f"worker {worker} to boot")
    assert server.popen.poll() is None, server.output()[-3000:]


def assert_serving(server: ServerHandle) -> None:
    """The master is up, and a task submitted over HTTP succeeds."""
    for _ in range(8):  # new connections: both workers get some
        status, rec, _ = server.http("POST", "/tasks", {"kind": "echo", "args": ["still here"]})
        assert status == 202, rec
        assert server.wait_task(rec["id"])["status"] == "succeeded"
    assert server.popen.poll() is None, server.output()[-3000:]
    assert "Worker failed to boot" not in server.output()


def test_a_bad_edit_on_disk_does_not_stop_a_replacement_worker(server: ServerHandle) -> None:
    server.env.write_config(executors="many")
    kill_a_worker_and_wait_for_its_replacement(server)
    kill_a_worker_and_wait_for_its_replacement(server)
    assert server.http("GET", "/readyz")[0] == 200


def test_a_bad_edit_refused_on_hup_keeps_every_worker_booting(server: ServerHandle) -> None:
    old = http_workers(server)
    server.env.write_config(executors=0)
    server.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in server.output(), 30,
             what="the reload to be refused in the log")
    assert "'executors'" in server.output()
    # HUP replaces every HTTP worker: the new ones boot on the old settings.
    new = wait_for(lambda: not (w := http_workers(server)) & old and len(w) == 2 and w, 60,
                   what="2 new HTTP workers after HUP")
    for worker in new:
        wait_for_app_loaded(server, worker)
    assert_serving(server)
    kill_a_worker_and_wait_for_its_replacement(server)
    rows = server.http("GET", "/queue/stats")[1]["executors"]
    assert len([e for e in rows if e["state"] in ("idle", "busy")]) == 2


def test_a_good_edit_after_a_refused_one_still_applies(server: ServerHandle) -> None:
    server.env.write_config(executors="many")
    server.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in server.output(), 30, what="the refused reload")
    server.env.write_config(executors=3)
    server.signal(signal.SIGHUP)

    def live_executors() -> int:
        rows = server.http("GET", "/queue/stats")[1]["executors"]
        return len([e for e in rows if e["state"] in ("idle", "busy")])

    wait_for(lambda: live_executors() == 3, 60, what="3 executors after the good HUP")
    assert_serving(server)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_a_killed_keeper_is_replaced_once_its_pool_has_stopped(env: Env,
                                                               stop: signal.Signals) -> None:
    server = ServerHandle(env)
    try:
        keeper, pool = keeper_pid(server), server.pool_pid()
        assert keeper is not None and pool is not None
        _, running, _ = server.http("POST", "/tasks", {"kind": "sleep", "args": [1.5]})
        wait_for(lambda: server.http("GET", f"/tasks/{running['id']}")[1]["status"]
                 == "running", 30, what="the task to run")
        os.kill(keeper, signal.SIGKILL)
        new_keeper = wait_for(lambda: (k := keeper_pid(server)) != keeper and k, 60,
                              what="a new keeper")
        wait_for(lambda: not pid_alive(pool), 30, what="the old pool to be gone")
        wait_for(lambda: server.http("GET", "/readyz")[0] == 200
                 and server.pool_pid() not in (None, pool), 60, what="a new pool to be ready")
        assert "the pool keeper is gone" in server.output()
        # The old pool finished its running task before the new one started:
        # the new pool did not take it for lost and run it again.
        done = server.wait_task(running["id"])
        assert (done["status"], done["attempts"]) == ("succeeded", 1)
        assert_serving(server)
        assert keeper_pid(server) == new_keeper
        server.signal(stop)
        assert server.popen.wait(60) == (0 if stop == signal.SIGTERM else -signal.SIGKILL)
        wait_for(lambda: session_pids(server.pid) == [], 60, what="every process to exit")
    finally:
        server.stop()


def test_post_tasks_never_answers_422_for_a_registered_kind_while_the_template_restarts(
        server: ServerHandle) -> None:
    """SIGKILL of the template: while the pool loads a new one (0.1-0.3 s), a
    registered kind is still accepted (202) and runs later; a client takes a
    422 unknown_kind as final and would drop the task."""
    pool = server.pool_pid()
    assert pool is not None
    [template] = wait_for(lambda: template_pids(pool), 10, what="the template")
    os.kill(template, signal.SIGKILL)
    loaded = "task code loaded (generation 2)"
    answers: list[tuple[int, object]] = []
    # POST without pause from the kill until the new template has loaded (and
    # a little after): some requests land while none is loaded.
    while loaded not in server.output() or len(answers) < 50:
        status, rec, _ = server.http("POST", "/tasks", {"kind": "noop"})
        answers.append((status, rec))
    assert "the template process died" in server.output()  # the kill was seen
    assert [a for a in answers if a[0] != 202] == []
    for _, rec in answers:
        assert server.wait_task(rec["id"])["status"] == "succeeded"  # type: ignore[index]
