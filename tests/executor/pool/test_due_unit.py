"""``Due``: when the pool's next claim runs (no processes; a real event loop,
and a fake clock for the due times behind ``Due``'s ``clock`` seam, so a
timer can be made to fire "early")."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from executor.pool.due import Due

T0 = 1_000_000.0


class Clock:
    """The time ``Due`` reads (it stands still unless a test moves it); counts reads."""

    def __init__(self) -> None:
        self.now = T0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def _due() -> tuple[Due, Clock, list[int]]:
    turns: list[int] = []
    clock = Clock()
    return Due(lambda: turns.append(1), clock), clock, turns


async def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.001)


def test_a_time_already_come_claims_with_the_next_turn() -> None:
    async def main() -> None:
        due, _, turns = _due()
        due.maybe = False
        due.note(T0)
        assert due.maybe and turns == [1] and due.next_at is None

    asyncio.run(main())


def test_a_time_to_come_claims_when_it_comes_and_not_before() -> None:
    async def main() -> None:
        due, clock, turns = _due()
        due.maybe = False
        due.note(T0 + 0.02)
        assert (due.next_at, turns, due.may_be_due(T0)) == (T0 + 0.02, [], False)
        assert due.may_be_due(T0 + 0.02)
        clock.now = T0 + 0.02
        await _until(lambda: bool(turns))
        assert due.maybe and due.next_at is None and turns == [1]

    asyncio.run(main())


def test_a_timer_that_fires_early_arms_again_and_claims_once_the_time_comes() -> None:
    # Issue 14: the loop may fire a timer before the clock reaches its time; one
    # that then did nothing left the task waiting for the next tick, or forever.
    async def main() -> None:
        due, clock, turns = _due()
        due.maybe = False
        due.note(T0 + 0.02)
        armed_at = clock.reads
        # The clock stands still: every firing is early. Each reads the clock
        # (to judge, then to arm again): two firings, so it armed itself again.
        await _until(lambda: clock.reads >= armed_at + 4)
        assert turns == [] and due.next_at == T0 + 0.02 and not due.maybe
        clock.now = T0 + 0.02
        await _until(lambda: bool(turns))
        assert due.maybe and due.next_at is None

    asyncio.run(main())


def test_the_earliest_time_noted_wins() -> None:
    async def main() -> None:
        due, _, _ = _due()
        due.note(T0 + 60)
        due.note(T0 + 30)
        due.note(T0 + 45)
        assert due.next_at == T0 + 30

    asyncio.run(main())


def test_a_claim_that_caught_up_waits_for_the_stores_next_due_time() -> None:
    async def main() -> None:
        due, _, turns = _due()
        assert due.maybe  # a new pool claims at once
        due.caught_up(T0 + 60)
        assert (due.maybe, due.next_at) == (False, T0 + 60)
        assert not due.may_be_due(T0 + 59) and due.may_be_due(T0 + 60)
        due.tick(T0 + 59)
        assert turns == [] and due.next_at == T0 + 60
        due.tick(T0 + 60)  # the tick claims even if the timer is late
        assert turns == [1] and due.maybe and due.next_at is None
        due.caught_up(None)  # nothing waits in the store
        assert (due.maybe, due.next_at) == (False, None)

    asyncio.run(main())


def test_now_claims_with_the_next_turn() -> None:
    async def main() -> None:
        due, _, turns = _due()
        due.caught_up(None)
        due.now()
        assert due.maybe and turns == [1]

    asyncio.run(main())
