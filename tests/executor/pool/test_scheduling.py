"""Scheduling with real executors: delays (not_before), priorities (also for
tasks that were already written to a busy executor's pipe), and cancellation."""

from __future__ import annotations

import time
from collections.abc import Callable

from executor.wire.codec import encode_call
from tests.executor.helpers import (
    executor_running,
    get,
    live_executor_pids,
    open_gate,
    pool_error,
    result,
    stored_status,
    wait_status,
)
from tests.support.procs import PoolHandle, pid_alive, wait_for

# -- delays ----------------------------------------------------------------------


def test_task_does_not_start_before_not_before(pool: PoolHandle) -> None:
    now = time.time()
    later = pool.submit("noop", not_before=now + 60)
    sooner = pool.submit("noop", not_before=now + 0.7)  # submitted after, due before
    b = pool.wait(sooner)
    assert b["status"] == "succeeded"
    assert b["not_before"] == now + 0.7
    assert b["started_at"] >= b["not_before"]
    # Due a minute from now: still waiting, though submitted first and an
    # executor is free.
    a = get(pool, later)
    assert (a["status"], a["not_before"], a["started_at"]) == ("pending", now + 60, None)
    assert pool.call("cancel", {"id": later})["status"] == "cancelled"


def test_unusable_not_before_is_refused(pool: PoolHandle) -> None:
    for bad in (float("nan"), float("inf"), -1, "tomorrow", True):
        spec = {"kind": "noop", "payload": encode_call([], {}), "not_before": bad}
        err = pool_error(pool, "submit", {"tasks": [spec]})
        assert (err.code, err.field) == ("invalid", "tasks[0].not_before"), bad
    assert pool.wait(pool.submit("noop"))["status"] == "succeeded"


def test_unusable_group_seq_is_refused(pool: PoolHandle) -> None:
    for bad in (-1, "1", 1.5, True):
        spec = {"kind": "noop", "payload": encode_call([], {}), "group_id": "g", "seq": bad}
        err = pool_error(pool, "submit", {"tasks": [spec]})
        assert (err.code, err.field) == ("invalid", "tasks[0].seq"), bad


# -- priorities ------------------------------------------------------------------


def _all_pending(pool: PoolHandle, ids: list[str]) -> bool:
    """Pending in the store itself (the API already shows a task that only
    waits in a pipe as pending; here it must really be back in the queue)."""
    return all(stored_status(pool, i) == "pending" for i in ids)


def _check_order(pool: PoolHandle, blocker: str, expected: list[str]) -> None:
    records = {i: pool.wait(i) for i in expected}
    assert {r["status"] for r in records.values()} == {"succeeded"}
    assert pool.env.trace("order.log") == [result(records[i]) for i in expected]
    starts = [records[i]["started_at"] for i in expected]
    assert starts == sorted(starts)
    assert starts[0] >= pool.wait(blocker)["finished_at"]


def test_higher_priority_runs_first_even_if_queued_behind_a_busy_executor(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=1)
    blocker = pool.submit("gate", "gate1")
    executor_running(pool, blocker)
    # Submitted one by one: the low ones are claimed first and written to the
    # busy executor's pipe; the pool must take them back so priority decides.
    low = [pool.submit("record", "order.log", f"low{i}", priority=0) for i in range(3)]
    high = [pool.submit("record", "order.log", f"high{i}", priority=10) for i in range(3)]
    wait_for(lambda: _all_pending(pool, low + high), 30,
             what="the tasks behind the busy executor to be pending again")
    open_gate(pool, "gate1")
    _check_order(pool, blocker, high + low)


def test_priority_order_holds_for_tasks_that_arrive_while_the_executor_is_busy(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=1)
    blocker = pool.submit("gate", "gate2")
    executor_running(pool, blocker)
    low = [pool.submit("record", "order.log", f"low{i}", priority=0) for i in range(3)]
    wait_for(lambda: _all_pending(pool, low), 30, what="the low tasks to be pending again")
    mid = [pool.submit("record", "order.log", f"mid{i}", priority=5) for i in range(2)]
    high = [pool.submit("record", "order.log", f"high{i}", priority=10) for i in range(2)]
    assert _all_pending(pool, mid + high)  # nothing is handed to an executor that is busy
    open_gate(pool, "gate2")
    _check_order(pool, blocker, high + mid + low)


# -- cancellation ----------------------------------------------------------------


def test_cancel_pending_task_behind_a_busy_executor(make_pool: Callable[..., PoolHandle]
                                                    ) -> None:
    pool = make_pool(executors=1)
    blocker = pool.submit("gate", "gate3")
    executor_running(pool, blocker)
    # Right after submit the task may still sit in the busy executor's pipe
    # (prefetch): to the user it has not started, so it can be cancelled.
    target = pool.submit("record", "order.log", "cancelled")
    rec = pool.call("cancel", {"id": target, "by": "tester"})
    assert rec["status"] == "cancelled"
    assert rec["cancelled_by"] == "tester"
    assert rec["finished_at"] is not None
    delayed = pool.submit("record", "order.log", "delayed", not_before=time.time() + 60)
    assert pool.call("cancel", {"id": delayed})["status"] == "cancelled"
    marker = pool.submit("record", "order.log", "marker")
    open_gate(pool, "gate3")
    assert pool.wait(marker)["status"] == "succeeded"
    assert pool.env.trace("order.log") == ["marker"]  # one executor, FIFO: it never ran
    after = get(pool, target)
    assert (after["status"], after["attempts"], after["cancelled_by"]) == ("cancelled", 0,
                                                                           "tester")
    assert pool.wait(blocker)["status"] == "succeeded"  # the running task was not disturbed


def test_cancelling_a_waiting_group_head_lets_the_next_call_run_at_once(
        pool: PoolHandle) -> None:
    head, second = (t["id"] for t in pool.call("submit", {"tasks": [
        {"kind": "record", "payload": encode_call(["order.log", "head"], {}),
         "group_id": "g", "seq": 0, "not_before": time.time() + 60},
        {"kind": "record", "payload": encode_call(["order.log", "second"], {}),
         "group_id": "g", "seq": 1}]})["tasks"])
    assert pool.call("cancel", {"id": head})["status"] == "cancelled"
    # at once, not at the head's not_before a minute away
    assert pool.wait(second, timeout_s=10)["status"] == "succeeded"
    assert pool.env.trace("order.log") == ["second"]


def test_cancel_retrying_task(pool: PoolHandle) -> None:
    task_id = pool.submit("flaky_slow", "slow.log", 2)
    waiting = wait_status(pool, task_id, "retrying")
    rec = pool.call("cancel", {"id": task_id, "by": "ops"})
    assert (rec["status"], rec["cancelled_by"]) == ("cancelled", "ops")
    # A task due after the cancelled one's retry: when it has run, the retry would have too.
    marker = pool.submit("noop", not_before=waiting["not_before"] + 0.05)
    assert pool.wait(marker)["status"] == "succeeded"
    assert len(pool.env.trace("slow.log")) == 1
    after = get(pool, task_id)
    assert (after["status"], after["attempts"]) == ("cancelled", 1)


def test_cancel_running_task_needs_force_which_kills_its_executor(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=1)
    task_id = pool.submit("gate", "never-opened", max_retries=3)
    waiting = pool.submit("record", "order.log", "next")
    victim = executor_running(pool, task_id)
    err = pool_error(pool, "cancel", {"id": task_id})
    assert err.code == "conflict"
    assert "force" in err.message
    assert get(pool, task_id)["status"] == "running"
    rec = pool.call("cancel", {"id": task_id, "force": True, "by": "admin"})
    assert (rec["status"], rec["cancelled_by"]) == ("cancelled", "admin")
    wait_for(lambda: not pid_alive(victim), 30, what="the executor to be killed")
    nxt = pool.wait(waiting)
    assert nxt["status"] == "succeeded"
    assert nxt["attempts"] == 1  # it only waited in the killed executor's pipe
    assert pool.wait(pool.submit("pid"))["status"] == "succeeded"
    assert victim not in live_executor_pids(pool)
    after = get(pool, task_id)
    assert (after["status"], after["attempts"], after["error"]) == ("cancelled", 1, None)


def test_cancel_finished_task_is_a_conflict(pool: PoolHandle) -> None:
    task_id = pool.submit("noop")
    assert pool.wait(task_id)["status"] == "succeeded"
    err = pool_error(pool, "cancel", {"id": task_id})
    assert err.code == "conflict"
    assert "succeeded" in err.message
    assert get(pool, task_id)["status"] == "succeeded"
    assert pool_error(pool, "cancel", {"id": "nope"}).code == "not_found"


# -- how long due tasks wait ---------------------------------------------------------


def _oldest_due_gauge(pool: PoolHandle) -> float:
    text = pool.call("metrics")["text"]
    line = next(x for x in text.splitlines()
                if x.startswith("offload_queue_oldest_due_seconds "))
    return float(line.split()[1])


def test_oldest_due_wait_counts_due_tasks_not_tasks_scheduled_ahead(pool: PoolHandle) -> None:
    ahead = pool.submit("noop", not_before=time.time() + 3600)
    stats = pool.call("stats")
    assert stats["counts"]["pending"] == 1 and stats["queue_depth"] == 1
    assert stats["oldest_due_s"] == 0 and _oldest_due_gauge(pool) == 0

    first = pool.submit("gate", "due-wait", group_id="g", seq=0)
    second = pool.submit("noop", group_id="g", seq=1)  # due, waits behind ``first``
    executor_running(pool, first)
    waited = wait_for(lambda: pool.call("stats")["oldest_due_s"] > 0.3 and
                      _oldest_due_gauge(pool), 10, what="a due task's wait to show")
    assert waited > 0.3
    open_gate(pool, "due-wait")
    assert pool.wait(second)["status"] == "succeeded"
    assert pool.call("stats")["oldest_due_s"] == 0 and _oldest_due_gauge(pool) == 0
    assert get(pool, ahead)["status"] == "pending"
