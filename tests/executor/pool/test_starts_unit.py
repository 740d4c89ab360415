"""``StartWrites``: tasks' starts written behind their run (a real event loop
and a real SQLite store; the pool is reduced to ``StartsOwner``, a narrow
seam). Issue 14's rules: a start waits at most ``START_WRITE_S`` for a turn,
the next turn writes every waiting start (not only old ones), a start whose
outcome comes in the same turn is left to the outcome, a rolled-back turn's
starts wait again, and one a reply is about to show is written first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from executor.pool.slots import Inflight
from executor.pool.starts import StartWrites
from executor.store import NewTask, Outcome, Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'tasks.db'}", writer=True)
    yield s
    s.close()


def _owner(store: Store, inflight: dict[str, tuple[object, Inflight]] | None = None
           ) -> SimpleNamespace:
    owner = SimpleNamespace(store=store, stopping=False, turns=[],
                            fleet=SimpleNamespace(handout=SimpleNamespace(
                                inflight=inflight or {})))
    owner.schedule_turn = lambda: owner.turns.append(1)
    return owner


def _claimed(store: Store, n: int) -> list[Inflight]:
    store.enqueue([NewTask("k", b"\x92\x90\x80", 3, 10.0) for _ in range(n)], time.time())
    return [Inflight(r.id, r.kind, r.attempts, 3, 10.0, r.created_at, 0.0,
                     started_at=time.time(), token=r.lease_token)
            for r in store.claim(n, time.time(), "pool", 30.0)]


async def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.001)


def test_a_start_gets_a_turn_of_its_own_once_its_timer_fires(store: Store) -> None:
    async def main() -> None:
        owner = _owner(store)
        starts = StartWrites(owner)
        (a,) = _claimed(store, 1)
        starts.add(a)
        assert not starts.due()  # a turn that comes sooner takes it; none is asked for yet
        await _until(lambda: bool(owner.turns))
        assert starts.due() and owner.turns == [1]

    asyncio.run(main())


def test_a_stopping_pool_writes_waiting_starts_at_once(store: Store) -> None:
    async def main() -> None:
        owner = _owner(store)
        starts = StartWrites(owner)
        assert not starts.due()  # nothing waits
        starts.add(_claimed(store, 1)[0])
        owner.stopping = True
        assert starts.due()

    asyncio.run(main())


def test_a_turn_takes_every_start_but_those_its_outcomes_carry(store: Store) -> None:
    async def main() -> None:
        starts = StartWrites(_owner(store))
        a, b, c = _claimed(store, 3)
        for inf in (a, b, c):
            starts.add(inf)
        ending = [(Outcome(b.id, "succeeded", time.time(), b.started_at), b)]
        taken = starts.take(ending)
        assert [s[0] for s in taken] == [a.id, c.id]
        assert taken[0] == (a.id, a.started_at, a.token)
        assert starts.take([]) == []  # taken: they wait no more

        d = _claimed(store, 1)[0]
        starts.add(d)
        starts.put_back(taken)  # that turn was rolled back: first again
        assert [s[0] for s in starts.take([])] == [a.id, c.id, d.id]

    asyncio.run(main())


def test_a_committed_turn_marks_the_starts_it_wrote_stored(store: Store) -> None:
    async def main() -> None:
        a, b = _claimed(store, 2)
        starts = StartWrites(_owner(store, {a.id: (object(), a)}))
        starts.add(a)
        starts.add(b)
        starts.stored(starts.take([]))  # b ended meanwhile: no longer in flight
        assert a.start_stored and not b.start_stored

    asyncio.run(main())


def test_a_start_a_reply_shows_is_written_first_and_only_once(store: Store) -> None:
    async def main() -> None:
        starts = StartWrites(_owner(store))
        a, b = _claimed(store, 2)
        starts.add(a)
        starts.add(b)
        starts.write_now(a)
        got = store.get(a.id)
        assert got is not None and got.started_at == a.started_at and a.start_stored
        assert [s[0] for s in starts.take([])] == [b.id]  # no turn writes a again

        b.started_at, b.start_stored = None, False  # handed out, not started
        starts.write_now(b)
        got = store.get(b.id)
        assert got is not None and got.started_at is None and not b.start_stored

    asyncio.run(main())
