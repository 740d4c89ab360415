"""Executor recycling with real executors: after max_tasks_per_executor tasks,
when resident memory passes max_memory_mb, and the hard address-space limit;
and the executors' lower CPU priority (executor_nice)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from tests.executor.helpers import result, submit_many
from tests.support.procs import PoolHandle, pid_alive, wait_for


def test_executors_are_recycled_by_task_count(make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(max_tasks_per_executor=5)
    ids = submit_many(pool, "pid", [()] * 30)
    records = [pool.wait(i) for i in ids]
    assert {r["status"] for r in records} == {"succeeded"}
    assert {r["attempts"] for r in records} == {1}  # tasks waiting in a leaving pipe never ran
    per_pid = Counter(result(r) for r in records)
    assert len(per_pid) > 2
    # 5 minus up to 10% jitter, never more: 30 tasks need at least 6 executors.
    assert max(per_pid.values()) <= 5
    assert sum(per_pid.values()) == 30


def test_executor_over_max_memory_is_replaced_after_its_task(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=1, max_memory_mb=60)
    task_id = pool.submit("alloc_mb", 100, kwargs={"keep": True})
    rec = pool.wait(task_id)
    assert rec["status"] == "succeeded"  # the task is fine; its executor leaves afterwards
    fat = result(rec)
    nxt = pool.wait(pool.submit("pid"))
    assert nxt["status"] == "succeeded"
    assert result(nxt) != fat
    wait_for(lambda: not pid_alive(fat), 30, what="the fat executor to exit")
    wait_for(lambda: f"executor {fat} leaves after task {task_id}: memory" in pool.output(), 30,
             what="the pool to log why the executor left")


def test_address_space_limit_fails_the_task_with_memory(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(memory_limit_mb=300)
    rec = pool.wait(pool.submit("alloc_mb", 1000))
    assert rec["status"] == "failed"
    assert rec["error"]["reason"] == "memory"
    assert rec["error"]["message"].startswith("MemoryError: ")
    assert rec["error"]["message"].endswith("(memory_limit_mb = 300)")
    assert pool.popen.poll() is None
    assert pool.wait(pool.submit("alloc_mb", 50))["status"] == "succeeded"
    assert pool.wait(pool.submit("noop"))["status"] == "succeeded"


def _nice(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])  # field 19, "nice"


def test_executors_run_at_lower_cpu_priority_than_the_pool(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=1, executor_nice=7)
    executor = result(pool.wait(pool.submit("pid")))
    assert _nice(executor) - _nice(pool.pid) == 7
