"""kill -9 of the pool loses nothing; SIGTERM lets running tasks finish."""

from __future__ import annotations

import signal

from executor.codec import encode_call
from tests.support.procs import Env, PoolHandle, wait_for


def test_kill_9_with_1000_pending_then_restart_runs_every_task(env: Env) -> None:
    env.write_config(executors=1)
    pool = PoolHandle(env)
    try:
        # Keep the single executor busy so the 1,000 tasks stay pending.
        blocker = pool.submit("sleep", 60)
        wait_for(lambda: pool.call("get", {"id": blocker})["status"] == "running",
                 what="the blocker to run")
        spec = {"kind": "noop", "payload": encode_call([], {})}
        ids = []
        for _ in range(10):
            ids += [t["id"] for t in pool.call("submit", {"tasks": [spec] * 100})["tasks"]]
        assert len(set(ids)) == 1000
        pool.signal(signal.SIGKILL)
        pool.popen.wait(10)
    finally:
        pool.stop()
    env.write_config(executors=2)
    pool = PoolHandle(env)
    try:
        def all_done() -> bool:
            counts = pool.call("stats")["counts"]
            return counts["succeeded"] >= 1000
        wait_for(all_done, 60, what="1,000 recovered tasks to succeed")
        statuses = {pool.call("get", {"id": i})["status"] for i in ids}
        assert statuses == {"succeeded"}
        rec = pool.call("get", {"id": blocker})
        assert rec["attempts"] >= 1  # the running task was found and rerun, its attempt counted
        assert rec["status"] in ("running", "pending", "succeeded", "retrying")
    finally:
        pool.stop()


def test_sigterm_lets_the_running_task_finish_and_keeps_pending(env: Env) -> None:
    env.write_config(executors=1, graceful_timeout_s=20)
    pool = PoolHandle(env)
    try:
        running = pool.submit("sleep", 1.0)
        wait_for(lambda: pool.call("get", {"id": running})["status"] == "running")
        waiting = [pool.submit("noop") for _ in range(5)]
        pool.signal(signal.SIGTERM)
        assert pool.popen.wait(30) == 0
    finally:
        pool.stop()
    from executor.store import open_store
    store = open_store(env.settings["store_url"])
    try:
        got = store.get(running)
        assert got is not None and got.status == "succeeded"
        # One of the waiting tasks may have been in the pipe: released, not run.
        assert [store.get(i).status for i in waiting] == ["pending"] * 5  # type: ignore[union-attr]
        assert all(store.get(i).attempts == 0 for i in waiting)  # type: ignore[union-attr]
    finally:
        store.close()
