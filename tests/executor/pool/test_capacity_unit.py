"""Placement and autoscaling rules (pure logic, no processes): which executor
may take which task, and when the executor count grows or shrinks."""

from __future__ import annotations

from executor.pool import autoscale
from executor.pool.capacity import (
    PREFETCH,
    PREFETCH_BYTES,
    REFILL_AT,
    Concurrency,
    Placer,
    guess,
    places,
    wants_more,
)
from executor.pool.slots import ExecutorState, Inflight, Slot
from executor.wire.protocol import FrameReader

MANIFEST = {"send": {"async": True, "concurrency": None},
            "slow_api": {"async": True, "concurrency": 5},
            "report": {"async": False, "concurrency": None}}


def slot(n: int = 1, state: ExecutorState = ExecutorState.IDLE) -> Slot:
    s = Slot(n, 1, -1, -1, -1, FrameReader())
    s.state = state
    return s


def give(s: Slot, concurrency: int, n: int = 1, started: bool = True) -> None:
    for i in range(n):
        inf = Inflight(f"{s.slot_id}-{s.count}-{i}", "k", 1, 0, 1.0, 0.0, 0.0,
                       concurrency=concurrency)
        if started:
            inf.started_at = 1.0
            s.running[inf.id] = inf
        else:
            s.waiting.append(inf)


def test_concurrency_of_a_kind_from_the_manifest_the_setting_or_what_executors_said() -> None:
    c = Concurrency()
    assert c.of("send", MANIFEST, 100) == 100  # async, no own: the setting
    assert c.of("slow_api", MANIFEST, 100) == 5
    assert c.of("report", MANIFEST, 100) == 1  # def
    assert c.of("send", MANIFEST, 100, solo=True) == 1  # quarantine
    assert c.of("app.hooks.post", MANIFEST, 100) == 1  # unknown until an executor says
    c.learn("app.hooks.post", MANIFEST, 100)
    c.learn("send", MANIFEST, 3)  # the manifest decides for its kinds
    c.learn("app.other", MANIFEST, "junk")
    assert c.of("app.hooks.post", MANIFEST, 100) == 100
    assert c.of("send", MANIFEST, 100) == 100
    assert c.of("app.other", MANIFEST, 100) == 1


def test_an_empty_executor_takes_any_task_up_to_its_concurrency_and_prefetch() -> None:
    s = slot()
    assert places(s, 1) == 1 + PREFETCH
    assert places(s, 100) == 100 + PREFETCH
    s.hold = True  # tasks waited too long here: none beyond what can start
    assert places(s, 1) == 1 and places(s, 100) == 100


def test_one_at_a_time_and_concurrent_tasks_never_share_an_executor() -> None:
    solo, shared = slot(1), slot(2)
    give(solo, 1)
    give(shared, 100, 3)
    assert places(solo, 100) == 0 and places(shared, 1) == 0
    assert places(solo, 1) == PREFETCH  # def tasks wait behind a def task
    assert places(shared, 100) == 100 + PREFETCH - 3
    assert places(shared, 5) == 5 + PREFETCH - 3  # the lowest concurrency caps the executor
    give(shared, 5, 1)
    assert places(shared, 100) == 5 + PREFETCH - 4


def test_place_prefers_the_executor_with_the_fewest_tasks_that_has_room() -> None:
    a, b, c = slot(1), slot(2), slot(3)
    give(a, 100, 10)
    give(b, 100, 2)
    give(c, 1)
    assert Placer([a, b, c]).place(100) is b
    assert Placer([a, b, c]).place(1) is c
    d = slot(4)
    assert Placer([a, b, c, d]).place(1) is d  # an empty one before a second task anywhere
    give(c, 1, PREFETCH, started=False)
    assert Placer([a, b, c]).place(1) is None  # no room for a def task: a leftover


def test_refill_only_when_few_tasks_wait_and_room_is_counted_with_a_guess() -> None:
    s = slot()
    assert wants_more(s, 1) and guess(s, 100) == 100
    give(s, 1)
    give(s, 1, REFILL_AT, started=False)
    assert wants_more(s, 1)  # as few as REFILL_AT wait: top it up
    give(s, 1, 1, started=False)
    assert not wants_more(s, 1)  # more wait in its pipe: later, in a bigger batch
    few_but_large = slot(2)
    give(few_but_large, 1)
    few_but_large.waiting.append(Inflight("big", "k", 1, 0, 1.0, 0.0, 0.0,
                                          size=PREFETCH_BYTES // 2 + 1))
    assert not wants_more(few_but_large, 1)  # over half the bytes wait: no claim for it
    assert guess(s, 100) == 1


def test_grow_only_when_every_executor_is_full_and_by_doubling_up_to_the_maximum() -> None:
    a, b = slot(1, ExecutorState.BUSY), slot(2, ExecutorState.BUSY)
    give(a, 1)
    give(b, 100, 40)
    assert not autoscale.may_grow([a, b], 8)  # b could start 60 more
    give(b, 100, 60)
    assert autoscale.may_grow([a, b], 8)
    assert not autoscale.may_grow([a, b], 2)  # at the maximum
    assert not autoscale.may_grow([a, b, slot(3, ExecutorState.STARTING)], 8)
    assert not autoscale.may_grow([a, b, slot(3)], 8)  # an empty one takes the next task
    assert [autoscale.grow_by(n, 32) for n in (1, 2, 4, 8, 16, 30, 32)] == [1, 2, 4, 8, 16,
                                                                            2, 0]
    assert autoscale.bounds(4, 2) == (4, 4)  # executors_max below executors: executors


def test_shrink_stops_only_executors_idle_long_enough_and_keeps_the_minimum() -> None:
    busy = slot(1, ExecutorState.BUSY)
    give(busy, 1)
    busy.last_busy = 0.0  # long ago, but it has a task
    idle = [slot(n) for n in (2, 3, 4)]
    for n, s in enumerate(idle):
        s.last_busy = float(n)  # idle since 0, 1, 2
    fresh = slot(5)
    fresh.last_busy = 9.5
    live = [busy, *idle, fresh]
    assert autoscale.idle_to_stop(live, 1, 5.0, 10.0) == idle  # longest idle first
    assert autoscale.idle_to_stop(live, 3, 5.0, 10.0) == idle[:2]  # never below 3
    assert autoscale.idle_to_stop(live, 1, 60.0, 10.0) == []


def test_a_placer_counts_what_it_placed() -> None:
    a, b = slot(1), slot(2)
    placer = Placer([a, b])
    assert [placer.place(100) for _ in range(4)] == [a, b, a, b]  # spread, emptiest first
    assert placer.place(1) is None  # both now hold concurrent tasks
    solo = Placer([slot(3)])
    first = solo.place(1)
    assert first is not None
    assert [solo.place(1) for _ in range(PREFETCH)] == [first] * PREFETCH
    assert solo.place(1) is None  # 1 to run + PREFETCH waiting


def test_a_placer_bounds_the_bytes_that_wait_in_a_pipe() -> None:
    big = PREFETCH_BYTES // 4
    busy = slot(1)
    give(busy, 1)  # runs a def task: whatever it gets waits
    placer = Placer([busy])
    assert [placer.place(1, big) for _ in range(4)] == [busy] * 4  # exactly the budget
    assert placer.place(1, 1) is None  # one byte more would wait beyond it
    empty = slot(2)
    placer = Placer([busy, empty])
    assert placer.place(1, 2 * PREFETCH_BYTES) is empty  # can start at once: always
    assert placer.place(1, big) is busy  # then it waits where bytes allow
    # what already waits in the pipe counts: a new hand-out sees it
    busy.waiting.append(Inflight("w", "k", 1, 0, 1.0, 0.0, 0.0, size=PREFETCH_BYTES))
    assert Placer([busy]).place(1, 1) is None
