"""Periodic tasks on three real pools sharing one PostgreSQL database, their
clocks offset by -2 s, 0 and +2 s (``tests.support.clocked_pool``, 5x real
time): every slot runs once, also when one pool is SIGKILLed mid-run, with
no leader."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from tests.executor.pool.test_schedules import F0, ClockedPool, runs, tick
from tests.support.clocked_pool import set_clock
from tests.support.hosts import query
from tests.support.procs import Env, kill_session, wait_for

pytestmark = pytest.mark.slow
OFFSETS_S = (-2.0, 0.0, 2.0)


def settled(seen: list[tuple[float, str]]) -> bool:
    """Every slot from the fifth seen on (each pool starts watching at its own
    moment) to the newest has started."""
    slots = {slot for slot, _ in seen}
    first = min(slots)
    return {first + k for k in range(5, int(max(slots) - first) + 1)} <= slots


def test_three_pools_with_offset_clocks_run_each_of_100_slots_once(
        tmp_path: Path, postgres_url: str) -> None:
    trace_dir = tmp_path / "trace"
    trace_dir.mkdir()
    envs, clocks = [], []
    for i in range(len(OFFSETS_S)):
        home = tmp_path / f"host-{i}"
        home.mkdir()
        env = Env(home, store_url=postgres_url, lease_s=5.0, result_ttl_s=2.0)
        env.trace_dir = trace_dir
        with open(env.config_path, "a") as f:
            f.write(tick(catch_up="all"))
        envs.append(env)
        clocks.append(home / "clock.json")
    for clock, offset in zip(clocks, OFFSETS_S, strict=True):  # one true time, three readings
        set_clock(clock, F0 + 0.5 + offset, speed=5.0)
    pools: list[ClockedPool] = []
    try:
        for env, clock in zip(envs, clocks, strict=True):
            pools.append(ClockedPool(env, clock))
        wait_for(lambda: len(runs(envs[0])) >= 40, 60, what="40 slots to run")
        kill_session(pools[2].pid)  # the pool whose clock is ahead: it took most slots
        pools[2].popen.wait(10)
        killed_at = max(slot for slot, _ in runs(envs[0]))
        # Slots may start out of order (several executors, and the killed
        # pool's runs rerun once their lease expires): wait for no gap too (a
        # slot that never runs leaves one for good, and this wait fails).
        wait_for(lambda: max(s for s, _ in runs(envs[0])) >= killed_at + 60
                 and len({s for s, _ in runs(envs[0])}) >= 110
                 and settled(runs(envs[0])), 120,
                 what="60 more slots to run on the two pools left, with no gap")
    finally:
        for pool in pools:
            pool.stop()
    seen = runs(envs[0])  # one trace, shared by the three hosts
    tasks = defaultdict(set)
    for slot, task_id in seen:
        tasks[slot].add(task_id)  # a run the kill interrupted reruns with the same id
    assert all(len(ids) == 1 for ids in tasks.values()), {
        s: ids for s, ids in tasks.items() if len(ids) > 1}
    first, last = min(tasks), max(tasks)
    # Every slot from the first few seconds on (each pool started watching
    # at its own moment) runs: 100 and more, across the kill.
    assert set(tasks) >= {F0 + k for k in range(int(first - F0) + 5, int(last - F0) + 1)}
    assert last - first + 1 >= 110 and killed_at + 60 <= last
    # (a slot taken as the pools stopped may not have run: the row may be ahead)
    ((taken,),) = query(postgres_url,
                        "SELECT slot FROM offload_schedule_slots WHERE schedule = 'tick'")
    assert taken >= last
