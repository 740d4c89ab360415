"""Tasks that share an executor (issue 17), with real pools and executors:
``async def`` tasks run concurrently on an executor's loop, one-at-a-time
kinds never share, and what ends one task (soft limit, forced cancel) or a
whole executor (segfault, hard limit) is charged to the right task."""

from __future__ import annotations

import signal
from collections.abc import Callable

from executor.wire.codec import encode_call
from executor.wire.errors import PoolUnavailable
from tests.executor.helpers import (
    executor_running,
    get,
    open_gate,
    result,
    stored_status,
    submit_many,
    wait_status,
)
from tests.support.procs import PoolHandle, pid_alive, wait_for


def _started(pool: PoolHandle, n: int, name: str = "async_started.log") -> None:
    """Wait until ``n`` tasks have written that they started (their own trace)."""
    wait_for(lambda: len(pool.env.trace(name)) >= n, 30, what=f"{n} tasks to start")


def _live(pool: PoolHandle) -> list[dict]:
    return [r for r in pool.call("stats")["executors"] if r["state"] in ("idle", "busy")]


def test_200_async_waits_on_2_executors_run_concurrently(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=2)
    ids = submit_many(pool, "async_wait", [(0.05,)] * 200)
    records = [pool.wait(i, timeout_s=60) for i in ids]
    assert {r["status"] for r in records} == {"succeeded"}
    assert {r["attempts"] for r in records} == {1}
    seen = [result(r) for r in records]
    # One at a time, no task would ever see another running: here dozens did.
    assert max(s["max"] for s in seen) >= 20
    assert len({s["pid"] for s in seen}) == 2  # both executors took a share


def test_a_one_at_a_time_kind_never_shares_an_executor(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=2)
    calls: list[tuple[str, float]] = []
    for i in range(30):
        calls.append(("async_alone", 0.05) if i % 5 == 0 else ("async_wait", 0.05))
    ids = [pool.submit(kind, seconds) for kind, seconds in calls]
    records = {i: pool.wait(i, timeout_s=60) for i in ids}
    assert {r["status"] for r in records.values()} == {"succeeded"}
    alone = [result(records[i]) for i, (kind, _) in zip(ids, calls, strict=True)
             if kind == "async_alone"]
    assert len(alone) == 6 and all(a["beside"] == 0 for a in alone)
    waits = [result(records[i]) for i, (kind, _) in zip(ids, calls, strict=True)
             if kind == "async_wait"]
    assert max(w["max"] for w in waits) >= 2  # the others did share


def test_soft_timeout_of_one_async_task_leaves_its_neighbours_running(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=1)
    neighbours = submit_many(pool, "async_gate", [("g", f"n{i}") for i in range(3)])
    _started(pool, 3)
    late = pool.submit("async_soft_timeout", "soft.log")
    rec = pool.wait(late)
    assert rec["status"] == "failed" and rec["error"]["reason"] == "timeout"
    assert "TaskTimeout: soft time limit exceeded" in rec["error"]["message"]
    assert pool.env.trace("soft.log") == ["cleaned up"]  # raised inside it, where it waited
    assert all(get(pool, i)["status"] == "running" for i in neighbours)
    open_gate(pool, "g")
    done = [pool.wait(i) for i in neighbours]
    assert {r["status"] for r in done} == {"succeeded"}
    assert {r["attempts"] for r in done} == {1}
    assert len({result(r) for r in done}) == 1  # one executor all along


def test_forced_cancel_of_one_async_task_leaves_its_neighbours_and_executor(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=1)
    neighbours = submit_many(pool, "async_gate", [("g", f"n{i}") for i in range(3)])
    target = pool.submit("async_gate", "never", "target")
    _started(pool, 4)
    [pid] = {r["pid"] for r in _live(pool)}
    rec = pool.call("cancel", {"id": target, "force": True, "by": "tester"})
    assert rec["status"] == "cancelled" and rec["cancelled_by"] == "tester"
    wait_for(lambda: target not in _live(pool)[0]["running"], 10,
             what="the cancelled task to end in its executor")
    assert set(_live(pool)[0]["running"]) == set(neighbours)
    open_gate(pool, "g")
    done = [pool.wait(i) for i in neighbours]
    assert {r["status"] for r in done} == {"succeeded"}
    assert {result(r) for r in done} == {pid}  # its executor was not killed
    assert pid_alive(pid)
    assert get(pool, target)["status"] == "cancelled"  # its DONE changed nothing


def test_a_segfault_in_a_shared_executor_fails_only_the_culprit(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=1)
    good = submit_many(pool, "async_gate", [("g", f"n{i}") for i in range(4)])
    bad = pool.submit("async_segfault", "seg.log")  # max_retries=2
    _started(pool, 4)
    wait_for(lambda: pool.env.trace("seg.log"), 30, what="the poison task to start")
    [first_pid] = {int(p) for p in pool.env.trace("seg.log")}
    open_gate(pool, "seg.log.gate")  # it crashes its executor, neighbours and all
    wait_for(lambda: not pid_alive(first_pid), 30, what="the shared executor to crash")
    open_gate(pool, "g")
    rec = pool.wait(bad, timeout_s=60)
    assert rec["status"] == "failed" and rec["error"]["reason"] == "crash"
    assert rec["attempts"] == 3  # max_retries + 1, each one charged
    done = [pool.wait(i, timeout_s=60) for i in good]
    assert {r["status"] for r in done} == {"succeeded"}
    assert {r["attempts"] for r in done} == {1}  # the crash was not theirs to pay
    assert len(pool.env.trace("seg.log")) == 4  # one shared attempt, three alone


def test_a_hard_time_limit_charges_only_the_late_task(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=1)  # kill_grace_s = 0.5
    neighbours = submit_many(pool, "async_gate", [("g", f"n{i}") for i in range(3)])
    _started(pool, 3)
    [pid] = {r["pid"] for r in _live(pool)}
    late = pool.submit("async_hard_timeout")
    rec = pool.wait(late)
    assert rec["status"] == "failed" and rec["error"]["reason"] == "timeout"
    assert "hard time limit" in rec["error"]["message"]
    wait_for(lambda: not pid_alive(pid), 30, what="the killed executor to be gone")
    open_gate(pool, "g")
    done = [pool.wait(i) for i in neighbours]
    assert {r["status"] for r in done} == {"succeeded"}
    assert {r["attempts"] for r in done} == {1}
    assert pid not in {result(r) for r in done}  # they ran again, on the replacement


def test_recycling_lets_the_running_async_tasks_finish(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=1, max_tasks_per_executor=2)
    ids = submit_many(pool, "async_gate", [("g", f"n{i}") for i in range(5)])
    _started(pool, 5)
    [pid] = {r["pid"] for r in _live(pool)}
    open_gate(pool, "g")
    done = [pool.wait(i) for i in ids]
    assert {r["status"] for r in done} == {"succeeded"}
    assert {r["attempts"] for r in done} == {1}
    assert {result(r) for r in done} == {pid}  # all five ended in the executor that left
    wait_for(lambda: not pid_alive(pid), 30, what="the recycled executor to leave")
    assert wait_status(pool, pool.submit("async_wait", 0), "succeeded")


def test_an_async_function_without_task_shares_executors_from_its_first_call(
        make_pool: Callable[..., PoolHandle]) -> None:
    """As ``add_task`` sends it: by ref, with ``concurrency`` 0 (the setting)."""
    pool = make_pool(executors=1)
    ref = "tests.executor.unlisted_tasks:wait_and_count"
    spec = {"kind": "tests.executor.unlisted_tasks.wait_and_count", "ref": ref,
            "payload": encode_call([0.2], {}), "concurrency": 0}
    ids = [t["id"] for t in pool.call("submit", {"tasks": [spec] * 20})["tasks"]]
    records = [pool.wait(i) for i in ids]
    assert {r["status"] for r in records} == {"succeeded"}
    assert max(result(r)["max"] for r in records) >= 10  # one at a time would be 1


def test_stats_and_metrics_show_running_tasks_and_free_places(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=2, async_concurrency=10)
    alone = pool.submit("gate", "g")  # a def task: one at a time
    executor_running(pool, alone)
    shared = submit_many(pool, "async_gate", [("g", f"n{i}") for i in range(3)])
    _started(pool, 3)

    def rows() -> list[dict]:
        return sorted(_live(pool), key=lambda r: len(r["running"]))

    wait_for(lambda: [len(r["running"]) for r in rows()] == [1, 3], 30,
             what="one executor running the def task, the other the three async ones")
    solo, busy = rows()
    assert (solo["running"], solo["free"], solo["task_id"]) == ([alone], 0, alone)
    assert (set(busy["running"]), busy["free"]) == (set(shared), 7)
    text = pool.call("metrics")["text"]
    assert 'offload_executor_slots{state="busy"} 4.0' in text
    assert 'offload_executor_slots{state="free"} 7.0' in text
    open_gate(pool, "g")
    assert {pool.wait(i)["status"] for i in [*shared, alone]} == {"succeeded"}


def test_a_graceful_stop_waits_for_every_running_task_of_an_executor(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=1, graceful_timeout_s=30)
    ids = submit_many(pool, "async_gate", [("g", f"n{i}") for i in range(3)])
    _started(pool, 3)
    pool.signal(signal.SIGTERM)

    def refused() -> bool:  # the pool closes its socket once its stop has begun
        try:
            pool.call("health", timeout_s=1)
        except PoolUnavailable:
            return True
        return False

    wait_for(refused, 30, what="the pool to begin its stop")
    assert pool.popen.poll() is None  # it waits for the three tasks
    open_gate(pool, "g")
    pool.popen.wait(30)
    assert [stored_status(pool, i) for i in ids] == ["succeeded"] * 3
