"""Slot arithmetic (executor/pool/timetable.py): pure, no processes."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from config.schedules import Schedule
from executor.pool.timetable import MAX_CATCH_UP_RUNS, Plan, Step, Timetable, plan

F0 = 1_999_998_000.0  # a whole hour since the epoch
PARIS = ZoneInfo("Europe/Paris")


def every(every_s: float = 1.0, **fields: object) -> Timetable:
    return Timetable(Schedule(name="s", kind="k", every_s=every_s, **fields))  # type: ignore[arg-type]


def cron(expr: str, tz: str = "UTC", **fields: object) -> Timetable:
    return Timetable(Schedule(name="s", kind="k", cron=expr, tz=tz, **fields))  # type: ignore[arg-type]


def paris(*fields: int) -> float:
    return datetime(*fields, tzinfo=PARIS).timestamp()  # type: ignore[misc]


def test_every_s_slots_are_multiples_of_the_period_since_the_epoch() -> None:
    table = every(30)
    assert table.slots(F0 + 0.5, F0 + 95) == [F0 + 30, F0 + 60, F0 + 90]
    assert table.slots(F0, F0 + 30) == [F0 + 30]  # after, excluded; until, included
    assert table.next_after(F0) == F0 + 30
    assert table.next_after(F0 + 29.9) == F0 + 30


def test_hosts_with_clocks_2_s_apart_see_the_same_slots() -> None:
    table = every(1)
    slow = [s for now in range(100) for s in table.slots(F0 + now - 2, F0 + now - 1)]
    fast = [s for now in range(100) for s in table.slots(F0 + now + 1, F0 + now + 2)]
    assert len(slow) == len(fast) == 100
    assert set(slow) & set(fast) == set(slow[3:])  # only when each sees a slot differs


def test_cron_slots_in_utc() -> None:
    table = cron("*/5 * * * *")
    t0 = datetime(2026, 1, 1, 0, 2, tzinfo=ZoneInfo("UTC")).timestamp()
    assert table.slots(t0, t0 + 600) == [t0 + 180, t0 + 480]
    assert table.next_after(t0 + 180) == t0 + 480
    assert table.next_after(t0 + 180.5) == t0 + 480  # a fraction of a second past a slot


def test_cron_in_paris_across_the_spring_jump_runs_the_skipped_time_after_it() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    table = cron("30 2 * * *", "Europe/Paris")
    slots = table.slots(paris(2026, 3, 28, 12, 0), paris(2026, 3, 30, 12, 0))
    assert slots == [paris(2026, 3, 29, 3, 0), paris(2026, 3, 30, 2, 30)]


def test_cron_in_paris_across_the_autumn_fold_runs_once() -> None:
    # 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
    table = cron("30 2 * * *", "Europe/Paris")
    slots = table.slots(paris(2026, 10, 24, 12, 0), paris(2026, 10, 26, 12, 0))
    assert len(slots) == 2
    assert slots[1] - slots[0] == 25 * 3600  # that day has 25 hours


def test_plan_runs_the_newest_due_slot_by_default() -> None:
    table = every(1)
    assert plan(table, last=F0, since=F0, now=F0 + 0.9) == Plan([])
    assert plan(table, last=F0, since=F0, now=F0 + 1.1) == Plan([Step(F0 + 1, True)])
    assert plan(table, last=None, since=F0 + 0.5, now=F0 + 1.1) == Plan([Step(F0 + 1, True)])
    # a schedule never taken starts after the pool first saw it
    assert plan(table, last=None, since=F0 + 0.5, now=F0 + 0.9) == Plan([])


@pytest.mark.parametrize(("catch_up", "expected"), [
    ("latest", Plan([Step(F0 + 6, True)], passed_over=4)),
    ("skip", Plan([Step(F0 + 6, False)], passed_over=4)),
    ("all", Plan([Step(F0 + k, True) for k in range(2, 7)])),
])
def test_plan_after_5_missed_slots(catch_up: str, expected: Plan) -> None:
    table = every(1, catch_up=catch_up)
    assert plan(table, last=F0 + 1, since=F0 + 6.5, now=F0 + 6.5) == expected


def test_skip_still_runs_a_slot_that_came_while_the_pool_watched() -> None:
    table = every(1, catch_up="skip")
    assert plan(table, last=F0 + 1, since=F0 + 1.5, now=F0 + 2.1) == Plan([Step(F0 + 2, True)])
    # a pool that stalled for 3 slots passes over the older ones
    assert plan(table, last=F0 + 1, since=F0 + 1.5, now=F0 + 4.1) == Plan(
        [Step(F0 + 4, True)], passed_over=2)


def test_slots_older_than_max_delay_s_never_run() -> None:
    assert plan(every(1, max_delay_s=2.0), last=F0, since=F0 + 9, now=F0 + 10.5) == Plan(
        [Step(F0 + 10, True)], passed_over=1)
    assert plan(every(1, catch_up="all", max_delay_s=2.0), last=F0, since=F0 + 9,
                now=F0 + 10.5) == Plan([Step(F0 + 9, True), Step(F0 + 10, True)])
    assert plan(every(60, max_delay_s=10.0), last=F0, since=F0 + 100,
                now=F0 + 100) == Plan([])


def test_catch_up_all_is_capped_to_the_newest_slots() -> None:
    steps, passed_over = plan(every(1, catch_up="all"), last=F0, since=F0 + 1000,
                              now=F0 + 1000.5)
    assert passed_over == 1000 - MAX_CATCH_UP_RUNS
    assert len(steps) == MAX_CATCH_UP_RUNS
    assert steps[-1] == Step(F0 + 1000, True) and steps[0] == Step(F0 + 901, True)


def test_a_slot_taken_by_a_pool_whose_clock_is_ahead_is_not_due_here() -> None:
    # another pool (clock +2 s) took slot 12; ours reads 10.5
    assert plan(every(1), last=F0 + 12, since=F0, now=F0 + 10.5) == Plan([])
