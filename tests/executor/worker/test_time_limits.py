"""Time limits with real executors: the soft limit raises inside the task, the
hard limit kills the executor's process group (children too) and replaces it."""

from __future__ import annotations

from collections.abc import Callable

from tests.executor.helpers import executor_running, live_executor_pids, result
from tests.support.procs import PoolHandle, pid_alive, wait_for


def test_soft_timeout_is_caught_by_the_task_which_cleans_up(pool: PoolHandle) -> None:
    rec = pool.wait(pool.submit("soft_timeout", "soft.log"))  # timeout_s=0.3
    assert rec["status"] == "failed"
    assert rec["error"]["reason"] == "timeout"
    assert "TaskTimeout: soft time limit exceeded" in rec["error"]["message"]
    assert "TaskTimeout" in rec["error"]["traceback"]
    assert pool.env.trace("soft.log") == ["cleaned up"]
    assert pool.wait(pool.submit("noop"))["status"] == "succeeded"


def test_hard_timeout_kills_the_process_group_and_replaces_the_executor(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=1)
    # hard_timeout ignores TaskTimeout; timeout_s=0.3 + kill_grace_s=0.5 -> killed.
    # One retry: the hard limit counts as an attempt like any other ending.
    task_id = pool.submit("hard_timeout", "hard.log", max_retries=1)
    first_executor = executor_running(pool, task_id)
    rec = pool.wait(task_id)
    assert rec["status"] == "failed"
    assert rec["error"]["reason"] == "timeout"
    assert "hard time limit" in rec["error"]["message"]
    assert rec["attempts"] == 2
    children = [int(line) for line in pool.env.trace("hard.log")]
    assert len(children) == 2
    wait_for(lambda: not any(pid_alive(p) for p in children), 30,
             what="the tasks' child processes to be gone")
    wait_for(lambda: not pid_alive(first_executor), 30, what="the killed executor to be gone")
    after = pool.wait(pool.submit("pid"))
    assert after["status"] == "succeeded"
    assert result(after) != first_executor
    assert live_executor_pids(pool) == {result(after)}
    assert pool.popen.poll() is None


def test_timeout_per_submission_overrides_the_kind(pool: PoolHandle) -> None:
    rec = pool.wait(pool.submit("sleep", 30, timeout_s=0.2, max_retries=0))  # kind: 300 s
    assert rec["status"] == "failed"
    assert rec["timeout_s"] == 0.2
    assert rec["error"]["reason"] == "timeout"
    assert pool.wait(pool.submit("sleep", 0, max_retries=0))["timeout_s"] == 300
