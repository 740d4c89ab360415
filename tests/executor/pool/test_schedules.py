"""Periodic tasks on a real pool (SQLite, real executors), its clock set by the test.

The pool runs ``tests.support.clocked_pool``: the production ``Pool`` built
with a clock read from a file, so a test freezes, steps or speeds up time
instead of sleeping through slots. Slots are seconds from ``F0``; the
``slot_run`` task records ``start``/``end <slot> <task id>`` lines.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.executor.helpers import open_gate
from tests.support.clocked_pool import set_clock
from tests.support.procs import PYTHON, Env, PoolHandle, wait_for

F0 = 2_000_000_000.0  # a whole second, and a multiple of every period below
pytestmark = pytest.mark.slow


class ClockedPool(PoolHandle):
    """``python -m tests.support.clocked_pool`` on ``env``, ready to answer."""

    def __init__(self, env: Env, clock: Path, *options: str) -> None:
        super().__init__(env, [PYTHON, "-m", "tests.support.clocked_pool", "--config",
                               str(env.config_path), "--clock-file", str(clock), *options])

    def schedule(self, name: str) -> dict[str, Any]:
        (row,) = [r for r in self.call("schedules")["schedules"] if r["name"] == name]
        return row  # type: ignore[no-any-return]

    def idle(self) -> bool:
        counts = self.call("stats")["counts"]
        return counts["pending"] + counts["running"] + counts["retrying"] == 0


def configure(env: Env, schedules: str, **settings: Any) -> None:
    """offload.toml: the test settings plus ``schedules`` (TOML tables)."""
    env.write_config(**settings)
    with open(env.config_path, "a") as f:
        f.write(schedules)


def tick(catch_up: str = "latest", overlap: str = "allow", every_s: int = 1,
         gate: str = "", name: str = "tick") -> str:
    return (f'\n[schedules.{name}]\nkind = "slot_run"\nevery_s = {every_s}\n'
            f'catch_up = "{catch_up}"\noverlap = "{overlap}"\n'
            f'kwargs = {{trace = "{name}", gate = "{gate}"}}\n')


def runs(env: Env, trace: str = "tick", what: str = "start") -> list[tuple[float, str]]:
    """``(slot, task id)`` of each ``what`` line of ``trace``, in order."""
    out = []
    for line in env.trace(trace):
        word, slot, task_id = line.split()
        if word == what:
            out.append((float(slot), task_id))
    return out


def step_to(pool: ClockedPool, clock: Path, at: float, name: str = "tick") -> dict[str, Any]:
    """Freeze the clock at ``at`` and wait until ``name`` has looked at it (its
    last slot is the newest one due); return the schedule's row."""
    set_clock(clock, at)
    want = float(int(at))
    return wait_for(lambda: (r := pool.schedule(name))["last_slot"] == want and r, 30,
                    what=f"schedule {name} to take slot {want}")


@pytest.fixture
def clock(tmp_path: Path) -> Path:
    path = tmp_path / "clock.json"
    set_clock(path, F0 + 0.5)
    return path


def without_gap(seen: list[tuple[float, str]]) -> bool:
    """Every one-second slot from the first seen to the last has started."""
    slots = {slot for slot, _ in seen}
    return len(slots) == int(max(slots) - min(slots)) + 1


def test_100_slots_each_run_once_across_a_sigkill_and_purges(env: Env, clock: Path) -> None:
    # result_ttl_s=1: finished runs are purged (every 0.5 s) while slots keep
    # coming, so a purged slot's idempotency key is gone: only the stored
    # slot keeps it from running again. The clock runs 5x real time.
    configure(env, tick(catch_up="all"), result_ttl_s=1.0)
    set_clock(clock, F0 + 0.5, speed=5.0)
    pool = ClockedPool(env, clock)
    try:
        wait_for(lambda: len(runs(env)) >= 40, 60, what="40 slots to run")
        pool.signal(signal.SIGKILL)
        pool.popen.wait(10)
    finally:
        pool.stop()
    killed_at = max(slot for slot, _ in runs(env))
    pool = ClockedPool(env, clock)  # the clock kept running: slots were missed meanwhile
    try:
        # Caught-up slots run on 2 executors in any order: the newest may start
        # before an older one, so wait until the slots seen have no gap (a slot
        # that never runs leaves one for good, and this wait fails). Slots, not
        # runs, are counted: the slot running at the SIGKILL runs (and logs) again.
        wait_for(lambda: ((seen := runs(env)) and len({s for s, _ in seen}) >= 100
                          and max(s for s, _ in seen) > killed_at + 5 and without_gap(seen)),
                 90, what="100 slots to run, with no gap")
        purged = wait_for(lambda: pool.call("list", {"kind": "slot_run", "limit": 500}), 10)
    finally:
        pool.stop()
    seen = runs(env)
    first, last = seen[0][0], max(slot for slot, _ in seen)
    tasks_per_slot = Counter(slot for slot, _ in set(seen))  # a rerun keeps its task id
    assert tasks_per_slot == Counter({F0 + k: 1 for k in range(int(first - F0),
                                                               int(last - F0) + 1)})
    assert last - first + 1 >= 100
    # The runs really were purged as they went (so purge could have reopened slots).
    assert len(purged["tasks"]) < len(tasks_per_slot)


@pytest.mark.parametrize(("catch_up", "expected", "missed"), [
    ("latest", [F0 + 6], 4), ("skip", [], 5), ("all", [F0 + k for k in range(2, 7)], 0)])
def test_catch_up_after_5_missed_slots(env: Env, clock: Path, catch_up: str,
                                       expected: list[float], missed: int) -> None:
    configure(env, tick(catch_up=catch_up))
    pool = ClockedPool(env, clock)
    try:
        step_to(pool, clock, F0 + 1.5)  # slot 1 comes while the pool runs: it runs
        wait_for(lambda: runs(env, what="end"), 30, what="slot 1 to run")
        # Its outcome stored too: a SIGKILL between the task's end and that
        # commit runs slot 1 again after the restart (at least once), which
        # is not what this test is about.
        wait_for(pool.idle, 30, what="slot 1's outcome to be stored")
        pool.signal(signal.SIGKILL)
        pool.popen.wait(10)
    finally:
        pool.stop()
    assert [slot for slot, _ in runs(env)] == [F0 + 1]
    set_clock(clock, F0 + 6.5)  # slots 2 to 6 pass with no pool
    pool = ClockedPool(env, clock)
    try:
        wait_for(lambda: pool.schedule("tick")["last_slot"] == F0 + 6, 30,
                 what="the missed slots to be taken")
        wait_for(pool.idle, 30, what="the catch-up runs to finish")
        metrics = pool.call("metrics")["text"]
    finally:
        pool.stop()
    assert sorted(slot for slot, _ in runs(env))[1:] == expected  # 2 executors: any order
    assert f'offload_schedule_runs_total{{schedule="tick"}} {float(len(expected))}' in metrics
    passed = 'offload_schedule_skipped_total{reason="missed",schedule="tick"}'
    assert (f"{passed} {float(missed)}" in metrics) if missed else passed not in metrics


def test_overlap_skip_takes_no_run_while_the_last_one_is_unfinished(
        env: Env, clock: Path) -> None:
    configure(env, tick(overlap="skip", gate="open"))
    pool = ClockedPool(env, clock)
    try:
        step_to(pool, clock, F0 + 1.5)
        wait_for(lambda: runs(env), 30, what="slot 1 to start")
        for at in (F0 + 2.5, F0 + 3.5):  # slot 1 still runs (its gate is shut)
            row = step_to(pool, clock, at)
            assert row["last_run"]["slot"] == F0 + 1
        open_gate(pool, "open")  # type: ignore[arg-type]
        wait_for(lambda: pool.schedule("tick")["last_run"]["status"] == "succeeded", 30,
                 what="slot 1 to finish")
        row = step_to(pool, clock, F0 + 4.5)
        assert row["last_run"]["slot"] == F0 + 4
        wait_for(pool.idle, 30, what="slot 4 to finish")
        metrics = pool.call("metrics")["text"]
    finally:
        pool.stop()
    assert [slot for slot, _ in runs(env)] == [F0 + 1, F0 + 4]
    assert 'offload_schedule_skipped_total{reason="overlap",schedule="tick"} 2.0' in metrics
    assert 'offload_schedule_runs_total{schedule="tick"} 2.0' in metrics


def test_overlap_queue_runs_each_slot_after_the_previous_one(env: Env, clock: Path) -> None:
    configure(env, tick(overlap="queue", gate="open"), executors=3)
    pool = ClockedPool(env, clock)
    try:
        step_to(pool, clock, F0 + 1.5)
        wait_for(lambda: runs(env), 30, what="slot 1 to start")
        step_to(pool, clock, F0 + 2.5)
        step_to(pool, clock, F0 + 3.5)
        # Slots 2 and 3 are stored, and wait although executors are free.
        statuses = {t["idempotency_key"]: t["status"]
                    for t in pool.call("list", {"kind": "slot_run"})["tasks"]}
        assert statuses == {"schedule:tick@2000000001.000": "running",
                            "schedule:tick@2000000002.000": "pending",
                            "schedule:tick@2000000003.000": "pending"}
        open_gate(pool, "open")  # type: ignore[arg-type]
        wait_for(lambda: len(runs(env, what="end")) == 3, 30, what="the 3 runs to end")
    finally:
        pool.stop()
    order = [(line.split()[0], float(line.split()[1])) for line in env.trace("tick")]
    assert order == [(word, F0 + k) for k in (1, 2, 3) for word in ("start", "end")]


def test_hup_applies_an_edited_schedule_and_refuses_a_broken_one(env: Env, clock: Path) -> None:
    configure(env, tick())
    pool = ClockedPool(env, clock)
    try:
        step_to(pool, clock, F0 + 1.5)
        configure(env, tick(every_s=2) + tick(name="tock"))
        pool.signal(signal.SIGHUP)
        wait_for(lambda: pool.schedule("tick")["spec"] == "every 2 s", 60,
                 what="the edited schedule to apply")
        step_to(pool, clock, F0 + 2.5)
        step_to(pool, clock, F0 + 3.5, name="tock")  # tick has no slot 3 any more
        assert pool.schedule("tick")["last_slot"] == F0 + 2
        for broken, complaint in [
                (tick(every_s=2) + tick(name="tock").replace("every_s = 1", 'cron = "61 * * * *"'),
                 "'cron' has value '61 * * * *', which does not parse"),
                (tick(every_s=2).replace('"slot_run"', '"slot_rnu"'),
                 "schedule 'tick': unknown task kind 'slot_rnu'; did you mean: slot_run")]:
            configure(env, broken)
            pool.signal(signal.SIGHUP)
            wait_for(lambda c=complaint: c in pool.output(), 60,  # type: ignore[misc]
                     what="the broken edit to be refused")
        assert pool.output().count("reload refused") == 2
        # The schedules before the broken edits keep running.
        step_to(pool, clock, F0 + 4.5)
        step_to(pool, clock, F0 + 5.5, name="tock")
        wait_for(pool.idle, 30, what="the runs to finish")
    finally:
        pool.stop()
    assert [slot for slot, _ in runs(env)] == [F0 + 1, F0 + 2, F0 + 4]
    assert [slot for slot, _ in runs(env, "tock")] == [F0 + 2, F0 + 3, F0 + 4, F0 + 5]


def test_a_turn_the_store_refuses_takes_no_slot_and_the_slot_runs_once_after(
        env: Env, clock: Path) -> None:
    configure(env, tick())
    pool = ClockedPool(env, clock, "--fail-slot-task-once")
    try:
        step_to(pool, clock, F0 + 1.5)  # refused once, then taken by a later turn
        wait_for(pool.idle, 30, what="slot 1 to run")
        metrics = pool.call("metrics")["text"]
    finally:
        pool.stop()
    assert f"FAULT: slot_task fails for tick {F0 + 1}" in pool.output()
    assert "the store refused this turn's writes" in pool.output()
    assert len(runs(env)) == 1 and runs(env)[0][0] == F0 + 1
    assert 'offload_schedule_runs_total{schedule="tick"} 1.0' in metrics
