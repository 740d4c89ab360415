"""What every shared store (several pools, one queue) must also do, under real
concurrency: several connections, each used from its own thread as one pool
would, hitting the same database at once (conftest.SHARED)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import pytest

from executor.store import Outcome, Store, StoreError
from tests.executor.store.test_contract import LEASE_S, SHORT_LEASE_S, T0, expire, new, ok

R = TypeVar("R")
THREADS = 4


def together(stores: list[Store], work: Callable[[int, Store], R]) -> list[R]:
    """Run ``work(i, store)`` in one thread per store, all released at once;
    return their results in order (re-raising the first failure)."""
    barrier = threading.Barrier(len(stores))
    results: list[R | None] = [None] * len(stores)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(30)
            results[i] = work(i, stores[i])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]


# -- claims ---------------------------------------------------------------------------------

def test_concurrent_claimers_take_every_task_once(open_shared: Callable[[], Store]) -> None:
    stores = [open_shared() for _ in range(THREADS)]
    ids = {r.id for r in stores[0].enqueue([new(priority=i % 3) for i in range(1200)], T0)}

    def drain(i: int, store: Store) -> list[str]:
        mine: list[str] = []
        while claimed := store.claim(7, T0, f"pool-{i}", LEASE_S):
            mine += [r.id for r in claimed]
            assert [r.id for r in store.finish([ok(r.id, token=r.lease_token)
                                                for r in claimed])] != []
        return mine

    taken = together(stores, drain)
    everyone = [task_id for mine in taken for task_id in mine]
    assert len(everyone) == len(set(everyone)) == 1200  # none twice
    assert set(everyone) == ids  # none lost
    assert sum(1 for mine in taken if mine) >= 2  # they really competed
    assert stores[0].counts()["succeeded"] == 1200


def test_group_runs_in_order_under_concurrent_claimers(
        open_shared: Callable[[], Store]) -> None:
    stores = [open_shared() for _ in range(THREADS)]
    groups, members = 12, 8
    stores[0].enqueue([new(group_id=f"g{g}", seq=s, priority=s % 2)
                       for s in reversed(range(members)) for g in range(groups)], T0)
    log: list[tuple[str, int]] = []
    lock = threading.Lock()

    def drain(i: int, store: Store) -> None:
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 2:
            claimed = store.claim(3, T0, f"pool-{i}", LEASE_S)
            if not claimed:
                if store.counts()["succeeded"] == groups * members:
                    return
                time.sleep(0.002)
                continue
            idle_since = time.monotonic()
            for rec in claimed:
                assert rec.group_id is not None
                earlier = store.list(limit=500)[0]
                unfinished = [r.seq for r in earlier if r.group_id == rec.group_id
                              and r.seq < rec.seq and r.status != "succeeded"]
                assert unfinished == [], (rec.group_id, rec.seq, unfinished)
                with lock:
                    log.append((rec.group_id, rec.seq))
            store.finish([ok(r.id, token=r.lease_token) for r in claimed])

    together(stores, drain)
    assert len(log) == groups * members
    for g in range(groups):
        assert [s for gid, s in log if gid == f"g{g}"] == list(range(members))


# -- fencing --------------------------------------------------------------------------------

def test_a_stale_token_changes_nothing(open_shared: Callable[[], Store]) -> None:
    a, b = open_shared(), open_shared()
    task, other = a.enqueue([new(priority=1), new()], T0)
    [first] = a.claim(1, T0, "pool-a", SHORT_LEASE_S)
    a.started([(task.id, T0 + 1, first.lease_token)])
    assert [r.id for r in expire(b)] == [task.id]  # pool-a paused past its lease
    [second] = b.claim(1, T0 + 20, "pool-b", LEASE_S)
    assert second.id == task.id and second.lease_token != first.lease_token
    stale = first.lease_token
    before = b.get(task.id)
    assert a.started([(task.id, T0 + 21, stale)]) == []
    assert a.renew([(task.id, stale)], "pool-a", T0 + 21, 500) == []
    assert a.renew([(task.id, stale)], "pool-b", T0 + 21, 500) == []  # owner alone is not enough
    assert a.finish([Outcome(task.id, "failed", T0 + 21, error={"reason": "error"},
                             token=stale)]) == []
    assert a.reschedule(task.id, T0 + 99, error={"reason": "error"}, count_attempt=True,
                        token=stale) is None
    with pytest.raises(StoreError), a.batch():
        a.cancel(task.id, "api", T0 + 21, force=True, token=stale)
    cancelled = a.cancel(task.id, "api", T0 + 21, force=True, token=stale)
    assert cancelled is not None and cancelled.status == "running"
    assert b.get(task.id) == before  # result, status, attempts, lease: all untouched
    # the current token still works, from either connection
    assert a.started([(task.id, T0 + 22, second.lease_token)]) == [task.id]
    assert b.renew([(task.id, second.lease_token)], "pool-b", T0 + 22, 500) == [task.id]
    [done] = a.finish([ok(task.id, token=second.lease_token, result=b"\x01")])
    assert (done.status, done.attempts, done.result) == ("succeeded", 2, b"\x01")
    assert b.get(other.id).status == "pending"  # type: ignore[union-attr]


def test_forced_cancel_with_the_current_token(open_shared: Callable[[], Store]) -> None:
    a = open_shared()
    task = a.enqueue([new()], T0)[0]
    [claimed] = a.claim(1, T0, "pool-a", LEASE_S)
    after = a.cancel(task.id, "api", T0 + 1, force=True, token=claimed.lease_token)
    assert after is not None and after.status == "cancelled"
    # the pool that ran it learns at its next renewal that the lease is gone
    assert a.renew([(task.id, claimed.lease_token)], "pool-a", T0 + 2, LEASE_S) == []


# -- idempotency ----------------------------------------------------------------------------

def test_the_same_keys_from_two_connections_at_once_make_one_task_each(
        open_shared: Callable[[], Store]) -> None:
    stores = [open_shared() for _ in range(THREADS)]
    keys = [f"key-{i}" for i in range(300)]

    def submit(i: int, store: Store) -> dict[str, str]:
        order = keys if i % 2 else list(reversed(keys))
        got: dict[str, str] = {}
        for start in range(0, len(order), 50):
            chunk = order[start:start + 50]
            records = store.enqueue([new(idempotency_key=k, payload=bytes([i])) for k in chunk],
                                    T0)
            got.update(zip(chunk, (r.id for r in records), strict=True))
        return got

    answers = together(stores, submit)
    for key in keys:
        assert len({answer[key] for answer in answers}) == 1, key
    assert stores[0].counts()["pending"] == len(keys)


def test_overlapping_keys_in_opposite_orders_never_deadlock(
        open_shared: Callable[[], Store]) -> None:
    """Two pools storing the same keys at once, in opposite orders, each in
    one insert: before keys were locked in one order first, PostgreSQL found
    a deadlock in most rounds and failed one of the two (a 503 for its
    submitters)."""
    stores = [open_shared() for _ in range(2)]
    for round_ in range(20):
        keys = [f"r{round_}-k{i}" for i in range(50)]

        def submit(i: int, store: Store, keys: list[str] = keys) -> list[str]:
            order = keys if i == 0 else keys[::-1]
            return [r.id for r in store.enqueue([new(idempotency_key=k) for k in order], T0)]

        forward, backward = together(stores, submit)
        assert forward == backward[::-1]  # one task per key, whoever stored it
    assert stores[0].counts()["pending"] == 20 * 50


def test_a_turn_of_many_keyed_tasks_is_stored(open_shared: Callable[[], Store]) -> None:
    """100,000 keyed tasks in one transaction (an outbox flush of background
    calls, every one keyed): nothing per key may take a slot of the server's
    shared lock table (max_locks_per_transaction x max_connections, 19,200
    on the test server), as per-key advisory locks once did."""
    store = open_shared()
    n = 100_000
    with store.batch():
        store.enqueue([new(group_id="g", seq=i, idempotency_key=f"bg:g:{i}")
                       for i in range(n)], T0, sync=False)
    assert store.counts()["pending"] == n


# -- recovery -------------------------------------------------------------------------------

def test_concurrent_recovers_count_each_attempt_once(open_shared: Callable[[], Store]) -> None:
    stores = [open_shared() for _ in range(THREADS)]
    a = stores[0]
    ran = a.enqueue([new(max_retries=0, priority=1) for _ in range(40)], T0)
    waited = a.enqueue([new(max_retries=5) for _ in range(40)], T0)
    claimed = a.claim(80, T0, "dead-pool", SHORT_LEASE_S)
    assert len(claimed) == 80
    a.started([(r.id, T0 + 1, r.lease_token) for r in claimed if r.priority == 1])
    time.sleep(SHORT_LEASE_S)  # most leases have expired when the race starts

    def sweep(i: int, store: Store) -> list[str]:
        ids: list[str] = []
        for _ in range(30):
            ids += [r.id for r in store.recover(T0 + 10)]
            time.sleep(0.005)
        return ids

    everyone = [task_id for ids in together(stores, sweep) for task_id in ids]
    while len(everyone) < 80:  # any lease that expired only after the race
        everyone += [r.id for r in expire(a)]
    assert Counter(everyone).most_common(1)[0][1] == 1  # each task changed once
    assert set(everyone) == {r.id for r in ran + waited}
    for r in ran:  # started, out of attempts: failed as lost, counted once
        rec = a.get(r.id)
        assert rec is not None and (rec.status, rec.attempts) == ("failed", 1)
    for r in waited:  # never started: attempt given back, once
        rec = a.get(r.id)
        assert rec is not None and (rec.status, rec.attempts) == ("pending", 0)
    assert a.counts()["failed"] == 40 and a.counts()["pending"] == 40


def test_a_callers_clock_cannot_expire_another_pools_lease(
        open_shared: Callable[[], Store]) -> None:
    a, b = open_shared(), open_shared()
    task = a.enqueue([new()], T0)[0]
    [held] = a.claim(1, T0, "pool-a", LEASE_S)
    a.started([(task.id, T0, held.lease_token)])
    far = time.time() + 10 * 365 * 86400  # a host whose clock runs ten years ahead
    assert b.recover(far) == []
    assert b.recover(T0 + 10**9) == []
    rec = b.get(task.id)
    assert rec is not None and (rec.status, rec.lease_owner) == ("running", "pool-a")
    assert rec.lease_expires_at is not None and rec.lease_expires_at > time.time() + 20
    # a pool whose clock is behind cannot keep a lease alive past the server's time either
    assert a.renew([(task.id, held.lease_token)], "pool-a", T0 - 10**9, SHORT_LEASE_S) == [task.id]
    assert [r.id for r in expire(b)] == [task.id]
