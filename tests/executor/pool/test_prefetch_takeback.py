"""Tasks waiting in an executor's pipe behind a slow task are taken back,
whatever their size.

A 64 KiB pipe holds only some 20 frames of 3 KB arguments; the rest of a
deep prefetch waits in the pool's out-buffer. Taking back must reach those
too (``Pipes.read_back``): before it did, tasks queued behind a slow ``def``
task waited for it while another executor was idle, and cancelling one that
never started answered ``conflict: running``. (Found in review, with tests
that failed on the code of that day.)
"""

from __future__ import annotations

from collections.abc import Callable

from executor.wire.codec import encode_call
from tests.executor.helpers import executor_running, open_gate
from tests.support.procs import PoolHandle, wait_for

BIG = "x" * 3000  # a 3 KB argument: 32 such frames do not fit in a 64 KiB pipe


def _submit(pool: PoolHandle, n: int) -> list[str]:
    specs = [{"kind": "record", "payload": encode_call(["big.log", f"{i}:{BIG}"], {})}
             for i in range(n)]
    return [t["id"] for t in pool.call("submit", {"tasks": specs})["tasks"]]


def test_large_tasks_behind_a_slow_one_move_to_the_idle_executor(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=2, executors_max=2)
    blocker = pool.submit("gate", "slowgate", "", 60)
    executor_running(pool, blocker)
    ids = _submit(pool, 64)
    try:
        wait_for(lambda: all(pool.call("get", {"id": i})["status"] == "succeeded"
                             for i in ids), 30,
                 what="every task to run on the idle executor while the gate holds")
        assert pool.call("get", {"id": blocker})["status"] == "running"
        assert len(pool.env.trace("big.log")) == 64
    finally:
        open_gate(pool, "slowgate")
    assert pool.wait(blocker)["status"] == "succeeded"


def test_a_large_prefetched_task_can_be_cancelled_without_force(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=1, executors_max=1)
    blocker = pool.submit("gate", "slowgate2", "", 60)
    executor_running(pool, blocker)
    ids = _submit(pool, 32)
    try:
        # handed to the busy executor's pipe, or already taken back from it
        rec = pool.call("cancel", {"id": ids[-1]})  # never started: it only waits
        assert rec["status"] == "cancelled"
    finally:
        open_gate(pool, "slowgate2")
    for task_id in ids[:-1]:
        assert pool.wait(task_id)["status"] == "succeeded"
    assert pool.call("get", {"id": ids[-1]})["status"] == "cancelled"
    assert all(not line.startswith(f"{len(ids) - 1}:") for line in pool.env.trace("big.log"))
