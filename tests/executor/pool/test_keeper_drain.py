"""The keeper once the gunicorn master is gone: the pool stays up, and stores,
until every HTTP worker has let go of the workers pipe; and a pool started
while a stopping one still holds the SQLite store waits for it."""

from __future__ import annotations

import os
import subprocess

from executor.wire.codec import encode_call
from tests.support.procs import (
    PYTHON,
    ROOT,
    Env,
    PoolHandle,
    call,
    kill_session,
    session_pids,
    wait_for,
)

NOOP = {"kind": "noop", "payload": encode_call([], {})}


def _start_keeper(env: Env) -> tuple[subprocess.Popen[bytes], int, int]:
    """A keeper as the master starts it; returns it and the master's write
    ends of its lifeline and of the workers pipe."""
    lifeline_r, lifeline_w = os.pipe()
    workers_r, workers_w = os.pipe()
    log = open(env.tmp / "keeper.log", "ab")  # noqa: SIM115 - the child holds it
    proc = subprocess.Popen(
        [PYTHON, "-m", "executor.pool.keeper", "--lifeline-fd", str(lifeline_r),
         "--workers-fd", str(workers_r), "--config", str(env.config_path)],
        pass_fds=(lifeline_r, workers_r), cwd=ROOT, env=env.environ(), stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    os.close(lifeline_r)
    os.close(workers_r)
    return proc, lifeline_w, workers_w


def test_the_pool_stays_up_until_the_workers_pipe_closes(env: Env) -> None:
    proc, lifeline_w, workers_w = _start_keeper(env)
    held = {lifeline_w, workers_w}

    def close(fd: int) -> None:
        held.discard(fd)
        os.close(fd)

    try:
        wait_for(lambda: call(env.socket_path, "health", timeout_s=1)["executors_up"] >= 1, 60,
                 what="the pool to be ready")
        close(lifeline_w)  # the master is gone; a worker still holds the workers pipe
        log = env.tmp / "keeper.log"
        wait_for(lambda: "the pool stays up until its HTTP workers" in log.read_text(), 30,
                 what="the keeper to hear of the master's death")
        reply = call(env.socket_path, "submit", {"tasks": [NOOP]})
        task_id = reply["tasks"][0]["id"]  # stored: the pool still serves, and runs it
        wait_for(lambda: call(env.socket_path, "get", {"id": task_id})["status"] == "succeeded",
                 30, what="the task submitted after the master's death to run")
        assert proc.poll() is None
        close(workers_w)  # the last worker has stored its calls
        assert proc.wait(60) == 0
        wait_for(lambda: session_pids(proc.pid) == [], 30, what="the pool to be gone")
        assert "stopping the pool" in log.read_text()
    finally:
        for fd in list(held):
            close(fd)
        kill_session(proc.pid)


def test_a_supervised_pool_waits_for_the_store_of_a_stopping_one(pool: PoolHandle) -> None:
    """A new master's pool starts while the old one drains: it waits for the
    writer lock instead of exiting, and takes over once the old one stops."""
    env = pool.env
    proc, lifeline_w, workers_w = _start_keeper(env)
    try:
        log = env.tmp / "keeper.log"
        wait_for(lambda: "waiting up to" in log.read_text(), 60,
                 what="the second pool to wait for the store")
        assert "another offload pool" in log.read_text()
        pool.stop()  # the old pool lets go of the store
        wait_for(lambda: call(env.socket_path, "health", timeout_s=1)["executors_up"] >= 1, 60,
                 what="the second pool to be ready")
        assert "the store is ours after" in log.read_text()
        assert call(env.socket_path, "submit", {"tasks": [NOOP]})["tasks"][0]["id"]
    finally:
        os.close(lifeline_w)
        os.close(workers_w)
        try:
            assert proc.wait(60) == 0
        finally:
            kill_session(proc.pid)
