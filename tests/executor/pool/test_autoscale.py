"""The executor count follows the work (issue 17), with a real pool: a burst
of waiting ``def`` tasks grows the executors up to ``executors_max``; idle
ones are stopped down to ``executors``, never one with a task; both bounds
apply live on HUP."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from tests.executor.helpers import executor_running, open_gate, result, submit_many
from tests.support.procs import PoolHandle, pid_alive, wait_for


def _live(pool: PoolHandle) -> list[dict[str, Any]]:
    return [r for r in pool.call("stats")["executors"]
            if r["state"] in ("starting", "idle", "busy")]


def test_a_burst_of_waiting_def_tasks_grows_to_executors_max_and_idle_ones_shrink_back(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=1, executors_max=4, executor_idle_s=0.5)
    burst = submit_many(pool, "gate", [("g1",)] * 10)
    most = 0

    def four_busy() -> bool:
        nonlocal most
        live = _live(pool)
        most = max(most, len(live))
        return len(live) == 4 and all(r["running"] for r in live)

    wait_for(four_busy, 30, what="four executors, each running a task")
    # Two long tasks arrive while the burst still runs; the burst then ends.
    keep = submit_many(pool, "gate", [("g2",)] * 2)
    open_gate(pool, "g1")
    assert {pool.wait(i)["status"] for i in burst} == {"succeeded"}
    holders = {executor_running(pool, i) for i in keep}
    # Idle executors leave; the two running a task stay although the minimum is 1.
    wait_for(lambda: {r["pid"] for r in _live(pool)} == holders, 30,
             what="the idle executors to be stopped, the busy ones kept")
    most = max(most, len(_live(pool)))
    open_gate(pool, "g2")
    kept = [pool.wait(i) for i in keep]
    assert {r["status"] for r in kept} == {"succeeded"}
    assert {r["attempts"] for r in kept} == {1}  # never killed, never run twice
    wait_for(lambda: len(_live(pool)) == 1, 30, what="the executors to shrink to the minimum")
    assert most == 4  # never above executors_max
    text = pool.call("metrics")["text"]
    for reason in ("killed", "crash", "timeout"):  # stopped, each one, not killed
        assert f'offload_executor_restarts_total{{reason="{reason}"}} 0.0' in text


def test_executors_max_applies_live_on_hup_and_running_tasks_finish(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(executors=1, executors_max=1)
    ids = submit_many(pool, "gate", [("g",)] * 4)
    first = executor_running(pool, ids[0])
    assert len(_live(pool)) == 1  # at the maximum: the others wait
    pool.env.write_config(executors_max=3)
    pool.signal(signal.SIGHUP)
    wait_for(lambda: len([r for r in _live(pool) if r["running"]]) == 3, 30,
             what="three executors running tasks after the reload")
    assert pid_alive(first)  # the old executor finishes its task before it leaves
    open_gate(pool, "g")
    done = [pool.wait(i) for i in ids]
    assert {r["status"] for r in done} == {"succeeded"}
    assert {r["attempts"] for r in done} == {1}
    assert result(pool.wait(ids[0])) == "opened"
    wait_for(lambda: not pid_alive(first), 30, what="the old executor to leave")
