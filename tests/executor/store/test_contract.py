"""The Store contract (executor/store/base.py), run against every backend in conftest."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from executor.store import (
    FINISHED,
    STATUSES,
    NewTask,
    Outcome,
    SQLiteStore,
    Store,
    StoreError,
    open_store,
)
from executor.store.records import TaskRecord
from executor.store.sqlite import SCHEMA_VERSION
from tests.support.procs import wait_for

T0 = 1_700_000_000.0  # a fixed "now"; stores never read the clock themselves
LEASE_S = 30.0
SHORT_LEASE_S = 0.2  # expires soon on either lease clock: T0 + 10 (callers') or the server's
OWNER = "pool-a"


def new(kind: str = "job", **fields: Any) -> NewTask:
    fields.setdefault("payload", b"\x92\x90\x80")
    fields.setdefault("max_retries", 2)
    fields.setdefault("timeout_s", 10.0)
    return NewTask(kind=kind, **fields)


def claim_ids(store: Store, n: int = 100, now: float = T0, owner: str = OWNER) -> list[str]:
    return [r.id for r in store.claim(n, now, owner, LEASE_S)]


def ok(task_id: str, now: float = T0 + 1, **fields: Any) -> Outcome:
    return Outcome(id=task_id, status="succeeded", finished_at=now, **fields)


def failed(task_id: str, now: float = T0 + 1) -> Outcome:
    error = {"reason": "error", "message": "ValueError: no", "traceback": "Traceback..."}
    return Outcome(id=task_id, status="failed", finished_at=now, error=error)


def assert_lease(store: Store, rec: TaskRecord, now: float, before: float, after: float,
                 lease_s: float = LEASE_S) -> None:
    """``rec``'s lease runs ``lease_s`` on the store's lease clock: from the
    caller's ``now`` (single writer) or from the database server's clock
    (shared; the server runs on this machine, read between ``before`` and
    ``after``, with a second's slack for the clocks' resolutions)."""
    assert rec.lease_expires_at is not None
    if store.shared:
        assert before - 1 <= rec.lease_expires_at - lease_s <= after + 1
    else:
        assert rec.lease_expires_at == now + lease_s


def expire(store: Store, now: float = T0 + 10) -> list[TaskRecord]:
    """``recover(now)`` once something was recovered: leases of SHORT_LEASE_S
    claimed at T0 have expired by ``now`` on a single writer's clock, and by
    the server's within that time on a shared one."""
    return wait_for(lambda: store.recover(now), 10, 0.02, what="a lease to expire")


def status_of(store: Store, task_id: str) -> str:
    record = store.get(task_id)
    assert record is not None
    return record.status


# -- enqueue ------------------------------------------------------------------------------

def test_enqueue_returns_pending_records_in_input_order(store: Store) -> None:
    batch = [new("a", priority=1), new("b", group_id="g", seq=3, ref="mod:fn"),
             new("c", not_before=T0 + 60, idempotency_key="k1")]
    records = store.enqueue(batch, T0)
    assert [r.kind for r in records] == ["a", "b", "c"]
    for task, record in zip(batch, records, strict=True):
        assert record.status == "pending" and record.attempts == 0
        assert record.created_at == T0
        assert (record.payload, record.max_retries, record.timeout_s, record.priority,
                record.group_id, record.seq, record.idempotency_key, record.ref) == (
            task.payload, task.max_retries, task.timeout_s, task.priority,
            task.group_id, task.seq, task.idempotency_key, task.ref)
        assert store.get(record.id) == record
    assert records[0].not_before == T0  # 0 means now
    assert records[2].not_before == T0 + 60


def test_ids_are_28_hex_chars_unique_and_time_sortable(store: Store) -> None:
    early = store.enqueue([new() for _ in range(50)], T0)
    late = store.enqueue([new()], T0 + 0.002)
    ids = [r.id for r in early + late]
    assert all(re.fullmatch(r"[0-9a-f]{28}", i) for i in ids), ids[:3]
    assert len(set(ids)) == len(ids)
    assert max(r.id for r in early) < late[0].id


def test_enqueue_is_durable_across_reopen(open_url: Callable[[], Store]) -> None:
    store = open_url()
    records = store.enqueue([new(payload=bytes([i])) for i in range(10)], T0)
    store.close()
    reopened = open_url()
    assert [reopened.get(r.id) for r in records] == records


def test_a_refused_task_leaves_nothing_of_its_batch(store: Store) -> None:
    batch = [new(), new(idempotency_key="kept-out"), new(max_retries=-1)]
    with pytest.raises(StoreError):
        store.enqueue(batch, T0)
    with pytest.raises(StoreError):
        store.enqueue([new(idempotency_key="kept-out"), new(group_id="g", seq=-1)], T0)
    assert store.counts() == dict.fromkeys(STATUSES, 0)
    # the key of the rolled-back batch is not taken
    assert store.enqueue([new(idempotency_key="kept-out")], T0)[0].status == "pending"


def test_enqueue_empty_batch(store: Store) -> None:
    assert store.enqueue([], T0) == []


def test_known_idempotency_key_returns_existing_record(store: Store) -> None:
    first = store.enqueue([new(idempotency_key="k", payload=b"1")], T0)[0]
    again = store.enqueue([new(), new(idempotency_key="k", payload=b"2")], T0 + 5)
    assert again[1] == first
    assert store.counts()["pending"] == 2


def test_idempotency_key_repeated_within_a_batch(store: Store) -> None:
    records = store.enqueue([new(idempotency_key="k", payload=b"1"), new(),
                             new(idempotency_key="k", payload=b"2")], T0)
    assert records[2] == records[0] and records[0].payload == b"1"
    assert store.counts()["pending"] == 2


def test_idempotency_key_of_a_finished_task_still_dedupes(store: Store) -> None:
    first = store.enqueue([new(idempotency_key="k")], T0)[0]
    store.finish([ok(claim_ids(store)[0])])
    again = store.enqueue([new(idempotency_key="k")], T0 + 5)[0]
    assert again.id == first.id and again.status == "succeeded"


# -- claim ----------------------------------------------------------------------------------

def test_claim_orders_by_priority_then_submission(store: Store) -> None:
    records = store.enqueue([new(priority=p) for p in (0, 5, 0, 5, -1, 9)], T0)
    ids = [r.id for r in records]
    assert claim_ids(store, 2) == [ids[5], ids[1]]
    assert claim_ids(store, 10) == [ids[3], ids[0], ids[2], ids[4]]
    assert claim_ids(store) == []


def test_claim_order_is_submission_order_whatever_the_idempotency_keys(store: Store) -> None:
    """PostgreSQL inserts a batch's rows in key order (no deadlock between
    hosts); the claim order must still be the order they were submitted in."""
    keys = ["zeta", None, "alpha", "mu", None, "beta"]
    first = store.enqueue([new(idempotency_key=k) for k in keys], T0)
    second = store.enqueue([new(idempotency_key=k) for k in ("omega", "a", None)], T0)
    assert claim_ids(store) == [r.id for r in first + second]


def test_claim_sets_running_lease_and_counts_the_attempt(store: Store) -> None:
    task_id = store.enqueue([new()], T0)[0].id
    before = time.time()
    [record] = store.claim(5, T0 + 1, OWNER, LEASE_S)
    assert record.id == task_id and record.status == "running" and record.attempts == 1
    assert record.lease_owner == OWNER
    assert_lease(store, record, T0 + 1, before, time.time())
    assert store.get(task_id) == record


def test_claim_respects_not_before(store: Store) -> None:
    later, now = store.enqueue([new(not_before=T0 + 100), new()], T0)
    assert claim_ids(store, now=T0) == [now.id]
    assert claim_ids(store, now=T0 + 99.9) == []
    assert claim_ids(store, now=T0 + 100) == [later.id]


def test_claim_nothing(store: Store) -> None:
    assert store.claim(10, T0, OWNER, LEASE_S) == []
    store.enqueue([new()], T0)
    assert store.claim(0, T0, OWNER, LEASE_S) == []


def test_group_runs_in_seq_order(store: Store) -> None:
    first, second, other = store.enqueue(
        [new(group_id="g", seq=0), new(group_id="g", seq=1), new(group_id="h", seq=0)], T0)
    assert claim_ids(store) == [first.id, other.id]  # second waits while first runs
    assert claim_ids(store) == []
    store.finish([ok(first.id)])
    assert claim_ids(store) == [second.id]


def test_group_order_follows_seq_not_submission(store: Store) -> None:
    late_seq, early_seq = store.enqueue([new(group_id="g", seq=2), new(group_id="g", seq=1)],
                                        T0)
    assert claim_ids(store) == [early_seq.id]
    store.finish([ok(early_seq.id)])
    assert claim_ids(store) == [late_seq.id]


@pytest.mark.parametrize("ending", ["succeeded", "failed", "cancelled"])
def test_group_continues_after_the_earlier_task_finishes(store: Store, ending: str) -> None:
    first, second = store.enqueue([new(group_id="g", seq=0), new(group_id="g", seq=1)], T0)
    if ending == "cancelled":
        store.cancel(first.id, "api", T0)
    else:
        claim_ids(store)
        store.finish([ok(first.id) if ending == "succeeded" else failed(first.id)])
    assert claim_ids(store) == [second.id]


def test_group_waits_while_the_earlier_task_is_retrying(store: Store) -> None:
    first, second = store.enqueue([new(group_id="g", seq=0), new(group_id="g", seq=1)], T0)
    claim_ids(store)
    store.reschedule(first.id, T0 + 10, error={"reason": "error"}, count_attempt=True)
    assert claim_ids(store, now=T0 + 5) == []
    assert claim_ids(store, now=T0 + 10) == [first.id]
    store.finish([ok(first.id)])
    assert claim_ids(store, now=T0 + 11) == [second.id]


# -- enqueue_and_claim ----------------------------------------------------------------------

def test_enqueue_and_claim_claims_by_priority_and_answers_as_enqueue(store: Store) -> None:
    before = time.time()
    records, started = store.enqueue_and_claim([new(priority=p) for p in (0, 5, 0, 9)], T0, 2,
                                               OWNER, LEASE_S)
    after = time.time()
    ids = [r.id for r in records]
    assert [r.status for r in records] == ["pending"] * 4  # as enqueue answers
    assert [r.id for r in started] == [ids[3], ids[1]]
    for rec in started:
        assert rec.status == "running" and rec.attempts == 1 and rec.started_at is None
        assert rec.lease_owner == OWNER
        assert_lease(store, rec, T0, before, after)
        assert store.get(rec.id) == rec
    assert store.counts()["running"] == 2 and store.counts()["pending"] == 2
    assert claim_ids(store) == [ids[0], ids[2]]  # the rest wait, in order


def test_enqueue_and_claim_takes_only_what_claim_could(store: Store) -> None:
    waiting = store.enqueue([new(group_id="old", seq=0)], T0)[0]
    batch = [new(not_before=T0 + 5), new(group_id="g", seq=1), new(group_id="g", seq=0),
             new(group_id="old", seq=1), new(idempotency_key="k")]
    store.enqueue([new(idempotency_key="k")], T0)
    records, started = store.enqueue_and_claim(batch, T0, 10, OWNER, LEASE_S)
    # not due; behind seq 0 of its group; its group's head; behind a stored
    # unfinished member; a known key (the stored record, never claimed twice)
    assert [r.id for r in started] == [records[2].id]
    assert claim_ids(store, now=T0 + 5) == [waiting.id, records[4].id, records[0].id]
    store.finish([ok(records[2].id)])
    assert claim_ids(store, now=T0 + 5) == [records[1].id]


def test_enqueue_and_claim_tasks_finish_and_recover_like_claimed_ones(store: Store) -> None:
    (first, second), started = store.enqueue_and_claim([new(), new()], T0, 2, OWNER, LEASE_S)
    assert len(started) == 2
    assert [r.id for r in store.finish([ok(first.id)])] == [first.id]
    assert [r.id for r in store.recover(T0, OWNER)] == [second.id]
    assert store.get(second.id).status == "pending"  # type: ignore[union-attr]
    assert claim_ids(store) == [second.id]


def test_a_failed_call_in_a_batch_leaves_no_trace_and_the_batch_goes_on(
        store: Store) -> None:
    kept = store.enqueue([new()], T0)[0]
    with store.batch():
        claimed = store.claim(1, T0, OWNER, LEASE_S)
        with pytest.raises(StoreError):
            store.enqueue([new(idempotency_key="x"), new(max_retries=-1)], T0, sync=False)
        added = store.enqueue([new(idempotency_key="x")], T0, sync=False)
        with pytest.raises(StoreError, match="batch"):
            store.cancel(added[0].id, "api", T0)  # power-safe: not inside a batch
    assert [r.id for r in claimed] == [kept.id]
    assert store.get(kept.id).status == "running"  # type: ignore[union-attr]
    assert store.counts()["pending"] == 1 and store.get(added[0].id) is not None


# -- finish, renew --------------------------------------------------------------------------

def test_finish_records_the_outcome_and_clears_the_lease(store: Store) -> None:
    a, b = store.enqueue([new("ka"), new("kb")], T0)
    claim_ids(store)
    store.started([(a.id, T0 + 0.25, None), (b.id, T0 + 0.25, None)])
    progress = {"value": 1.0, "message": "done"}
    changed = store.finish([ok(a.id, started_at=T0 + 0.5, result=b"\xc3", progress=progress),
                            failed(b.id)])
    assert {r.id: r.status for r in changed} == {a.id: "succeeded", b.id: "failed"}
    for record in changed:  # what the pool's metrics read
        assert record.kind in ("ka", "kb") and record.attempts == 1
        assert record.created_at == T0 and record.started_at is not None
    stored = store.get(a.id)
    assert stored is not None
    assert (stored.status, stored.result, stored.progress, stored.started_at,
            stored.finished_at) == ("succeeded", b"\xc3", progress, T0 + 0.5, T0 + 1)
    assert stored.lease_owner is None and stored.lease_expires_at is None
    failure = store.get(b.id)
    assert failure is not None and failure.error == failed(b.id).error


def test_finish_skips_tasks_not_running(store: Store) -> None:
    running, pending = store.enqueue([new(), new()], T0)
    claim_ids(store, 1)
    changed = store.finish([ok(pending.id), ok("missing"), ok(running.id), failed(running.id)])
    assert [(r.id, r.status) for r in changed] == [(running.id, "succeeded")]
    assert status_of(store, pending.id) == "pending"
    assert store.finish([failed(running.id)]) == []  # already finished
    assert status_of(store, running.id) == "succeeded"


def test_finish_refuses_a_status_that_is_not_an_ending(store: Store) -> None:
    task_id = store.enqueue([new()], T0)[0].id
    claim_ids(store)
    bad = Outcome(id=task_id, status="cancelled", finished_at=T0)  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        store.finish([bad])
    assert status_of(store, task_id) == "running"


def test_renew_extends_only_the_owners_running_leases(store: Store) -> None:
    mine, theirs = store.enqueue([new(priority=1), new()], T0)
    [claimed] = store.claim(1, T0, OWNER, SHORT_LEASE_S)
    store.claim(1, T0, "pool-b", SHORT_LEASE_S)
    before = time.time()
    renewed_ids = store.renew([(mine.id, claimed.lease_token), (theirs.id, None),
                               ("missing", None)], OWNER, T0 + 1, 500)
    assert renewed_ids == [mine.id]
    renewed = store.get(mine.id)
    assert renewed is not None
    assert_lease(store, renewed, T0 + 1, before, time.time(), lease_s=500)
    assert [r.id for r in expire(store)] == [theirs.id]
    assert status_of(store, mine.id) == "running"
    assert store.renew([(theirs.id, None)], "pool-b", T0 + 1, 500) == []  # taken back


# -- reschedule ----------------------------------------------------------------------------

def test_reschedule_as_retry_keeps_the_attempt(store: Store) -> None:
    task_id = store.enqueue([new()], T0)[0].id
    claim_ids(store)
    error = {"reason": "crash", "message": "crash: SIGSEGV", "traceback": ""}
    record = store.reschedule(task_id, T0 + 30, error=error, count_attempt=True)
    assert record is not None
    assert (record.status, record.attempts, record.not_before, record.error) == (
        "retrying", 1, T0 + 30, error)
    assert record.lease_owner is None and record.lease_expires_at is None
    assert store.get(task_id) == record
    assert store.claim(1, T0 + 30, OWNER, LEASE_S)[0].attempts == 2


def test_reschedule_as_release_undoes_the_attempt(store: Store) -> None:
    task_id = store.enqueue([new()], T0)[0].id
    claim_ids(store)
    record = store.reschedule(task_id, T0, error=None, count_attempt=False)
    assert record is not None and (record.status, record.attempts) == ("pending", 0)
    assert store.claim(1, T0, OWNER, LEASE_S)[0].attempts == 1


@pytest.mark.parametrize("count_attempt", [True, False])
def test_reschedule_only_from_running(store: Store, count_attempt: bool) -> None:
    pending, done = store.enqueue([new(), new(priority=1)], T0)
    claim_ids(store, 1)
    store.finish([ok(done.id)])
    for task_id in (pending.id, done.id, "missing"):
        assert store.reschedule(task_id, T0, error=None, count_attempt=count_attempt) is None
    assert status_of(store, pending.id) == "pending"
    assert status_of(store, done.id) == "succeeded"


# -- cancel --------------------------------------------------------------------------------

def test_cancel_pending_and_retrying(store: Store) -> None:
    pending, retrying = store.enqueue([new(), new(priority=1)], T0)
    claim_ids(store, 1)
    store.reschedule(retrying.id, T0 + 60, error=None, count_attempt=True)
    for task_id in (pending.id, retrying.id):
        record = store.cancel(task_id, "api", T0 + 2)
        assert record is not None
        assert (record.status, record.cancelled_by, record.finished_at) == (
            "cancelled", "api", T0 + 2)
        assert store.get(task_id) == record
    assert claim_ids(store, now=T0 + 60) == []
    assert store.next_due() is None


def test_cancel_running_needs_force(store: Store) -> None:
    task_id = store.enqueue([new()], T0)[0].id
    claim_ids(store)
    record = store.cancel(task_id, "api", T0 + 1)
    assert record is not None and record.status == "running"
    record = store.cancel(task_id, "admin", T0 + 2, force=True)
    assert record is not None and (record.status, record.cancelled_by) == ("cancelled",
                                                                           "admin")
    assert record.lease_owner is None
    assert store.finish([ok(task_id)]) == []  # the killed executor's late report is ignored
    assert status_of(store, task_id) == "cancelled"


@pytest.mark.parametrize("force", [False, True])
def test_cancel_finished_returns_it_unchanged(store: Store, force: bool) -> None:
    task_id = store.enqueue([new()], T0)[0].id
    claim_ids(store)
    store.finish([ok(task_id)])
    before = store.get(task_id)
    assert store.cancel(task_id, "api", T0 + 5, force=force) == before
    assert store.get(task_id) == before


def test_cancel_missing(store: Store) -> None:
    assert store.cancel("missing", "api", T0) is None
    assert store.cancel("missing", "api", T0, force=True) is None


# -- retry ---------------------------------------------------------------------------------

def test_retry_puts_a_failed_task_back_as_the_same_task(store: Store) -> None:
    payload = b"\x92\x91\x01\x81\xa1x\x02"
    task = store.enqueue([new(payload=payload, priority=4, idempotency_key="k")], T0)[0]
    claim_ids(store)
    store.finish([failed(task.id)])
    (back,) = store.retry([task.id], T0 + 10)
    assert (back.id, back.status, back.attempts, back.not_before) == (
        task.id, "pending", 0, T0 + 10)
    assert (back.started_at, back.finished_at, back.result, back.error, back.progress,
            back.lease_owner) == (None, None, None, None, None, None)
    stored = store.get(task.id)
    assert stored is not None and stored.payload == payload  # the stored call, untouched
    assert (stored.priority, stored.idempotency_key, stored.created_at) == (4, "k", T0)
    assert store.counts()["failed"] == 0 and store.counts()["pending"] == 1
    (again,) = store.claim(1, T0 + 10, OWNER, LEASE_S)
    assert (again.id, again.attempts, again.payload) == (task.id, 1, payload)
    store.finish([ok(task.id, T0 + 11)])
    assert status_of(store, task.id) == "succeeded"


def test_retry_a_cancelled_task_and_skip_every_other_status(store: Store) -> None:
    pending, running, succeeded, cancelled = store.enqueue(
        [new(priority=1), new(priority=3), new(priority=2), new()], T0)
    claim_ids(store, 2)
    store.finish([ok(succeeded.id)])
    store.cancel(cancelled.id, "api", T0 + 1)
    retrying = store.enqueue([new(priority=9)], T0)[0]
    claim_ids(store, 1)
    store.reschedule(retrying.id, T0 + 60, error=None, count_attempt=True)
    before = {t.id: store.get(t.id) for t in (pending, running, succeeded, retrying)}
    changed = store.retry([pending.id, running.id, succeeded.id, retrying.id, cancelled.id,
                           cancelled.id, "missing"], T0 + 5)
    assert [(r.id, r.status, r.cancelled_by) for r in changed] == [
        (cancelled.id, "pending", None)]
    assert {t: store.get(t) for t in before} == before
    assert store.counts()["cancelled"] == 0
    assert store.retry([], T0) == []


def test_failed_ids_filter_by_kind_and_time_oldest_first(store: Store) -> None:
    tasks = store.enqueue([new("a"), new("b"), new("a"), new("a"), new("c")], T0)
    claim_ids(store)
    a1, b, a2, a3, c = (t.id for t in tasks)
    store.finish([failed(a2, T0 + 2), failed(a1, T0 + 3), failed(b, T0 + 4),
                  failed(a3, T0 + 5), ok(c, T0 + 1)])
    assert store.failed_ids() == [a2, a1, b, a3]
    assert store.failed_ids(kind="a") == [a2, a1, a3]
    assert store.failed_ids(kind="a", limit=2) == [a2, a1]
    assert store.failed_ids(finished_after=T0 + 3, finished_before=T0 + 5) == [a1, b]
    assert store.failed_ids(kind="c") == []
    store.retry(store.failed_ids(kind="a"), T0 + 9)
    assert store.failed_ids() == [b]


# -- reads ---------------------------------------------------------------------------------

def test_get_missing(store: Store) -> None:
    assert store.get("0" * 28) is None


def test_list_pages_newest_first(store: Store) -> None:
    ids = [r.id for r in store.enqueue([new() for _ in range(7)], T0)]
    seen: list[str] = []
    page, cursor = store.list(limit=3)
    pages = 1
    seen += [r.id for r in page]
    while cursor is not None:
        page, cursor = store.list(limit=3, cursor=cursor)
        seen += [r.id for r in page]
        pages += 1
    assert seen == ids[::-1] and pages == 3
    page, cursor = store.list(limit=7)
    assert len(page) == 7 and cursor is None


def test_list_pages_carry_no_payload_and_get_does(store: Store) -> None:
    [rec] = store.enqueue([new(payload=b"x" * 100_000)], T0)
    page, _ = store.list()
    assert [r.id for r in page] == [rec.id] and page[0].payload == b""
    got = store.get(rec.id)
    assert got is not None and got.payload == b"x" * 100_000


def test_list_filters_by_status_and_kind(store: Store) -> None:
    records = store.enqueue([new("a"), new("b"), new("a"), new("a", priority=9)], T0)
    claim_ids(store, 1)  # the priority-9 "a"
    page, _ = store.list(status="pending", kind="a")
    assert [r.id for r in page] == [records[2].id, records[0].id]
    page, _ = store.list(status="running")
    assert [r.id for r in page] == [records[3].id]
    page, _ = store.list(kind="b")
    assert [r.id for r in page] == [records[1].id]
    first, cursor = store.list(kind="a", limit=2)
    assert cursor is not None
    rest, cursor = store.list(kind="a", limit=2, cursor=cursor)
    assert [r.id for r in first + rest] == [records[3].id, records[2].id, records[0].id]
    assert cursor is None
    assert store.list(status="failed") == ([], None)


@pytest.mark.parametrize("cursor", ["", "abc", "-1", "1.5", "١٢", "9" * 23, str(2**63)])
def test_list_rejects_a_bad_cursor(store: Store, cursor: str) -> None:
    with pytest.raises(StoreError, match="invalid cursor"):
        store.list(cursor=cursor)


def test_list_rejects_an_unknown_status(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown status"):
        store.list(status="done")


def test_counts_every_status(store: Store) -> None:
    assert store.counts() == dict.fromkeys(STATUSES, 0)
    a, b, _c, d, _e = store.enqueue([new(priority=3), new(priority=2), new(priority=1),
                                     new(), new()], T0)
    claim_ids(store, 3)
    store.finish([ok(a.id)])
    store.reschedule(b.id, T0 + 9, error=None, count_attempt=True)
    store.cancel(d.id, "api", T0)
    assert store.counts() == {"pending": 1, "running": 1, "retrying": 1, "succeeded": 1,
                              "failed": 0, "cancelled": 1}


def test_next_due(store: Store) -> None:
    assert store.next_due() is None
    store.enqueue([new(not_before=T0 + 50), new(not_before=T0 + 20, priority=1)], T0)
    assert store.next_due() == T0 + 20
    claim_ids(store, now=T0 + 20)  # running tasks are not waiting
    assert store.next_due() == T0 + 50


# -- recover, purge, close -----------------------------------------------------------------

def test_recover_expired_leases(store: Store) -> None:
    early, late = store.enqueue([new(priority=1), new()], T0)
    store.claim(1, T0, OWNER, SHORT_LEASE_S)
    store.claim(1, T0, OWNER, 100)
    store.started([(early.id, T0 + 1, None)])
    [record] = expire(store)
    assert record.id == early.id and (record.status, record.attempts) == ("pending", 1)
    assert record.lease_owner is None and record.lease_expires_at is None
    assert status_of(store, late.id) == "running"
    assert store.claim(1, T0 + 11, OWNER, 10)[0].attempts == 2


def test_claim_clears_started_at_until_started(store: Store) -> None:
    [task] = store.enqueue([new()], T0)
    [claimed] = store.claim(1, T0, OWNER, LEASE_S)
    assert claimed.started_at is None
    store.started([(task.id, T0 + 2, None), ("no-such-id", T0 + 2, None)])
    assert store.get(task.id).started_at == T0 + 2  # type: ignore[union-attr]
    store.finish([ok(task.id, now=T0 + 3)])
    store.started([(task.id, T0 + 9, None)])  # not running any more: skipped
    assert store.get(task.id).started_at == T0 + 2  # type: ignore[union-attr]


def test_recover_gives_back_the_attempt_of_a_task_that_never_started(store: Store) -> None:
    """A claimed task may wait in an executor's pipe; if its pool dies then, it
    never ran: it is not charged an attempt, nor failed as lost."""
    waited, ran = store.enqueue([new(max_retries=0, priority=1), new(max_retries=0)], T0)
    store.claim(2, T0, OWNER, LEASE_S)
    store.started([(ran.id, T0 + 1, None)])
    changed = {r.id: r for r in store.recover(T0 + 2, OWNER)}
    assert (changed[waited.id].status, changed[waited.id].attempts) == ("pending", 0)
    assert changed[ran.id].status == "failed"
    assert changed[ran.id].error["reason"] == "lost"  # type: ignore[index]


def test_recover_everything_only_on_a_single_writer_store(store: Store) -> None:
    """At its start a single writer's pool takes back every running task (no
    other pool can hold one); a shared store refuses: others hold leases."""
    mine, theirs = store.enqueue([new(priority=1), new()], T0)
    store.claim(1, T0, "old-pool", LEASE_S)
    store.claim(1, T0, "other-pool", LEASE_S)
    if store.shared:
        with pytest.raises(StoreError, match="shared"):
            store.recover(T0, everything=True)
        assert store.counts()["running"] == 2
    else:
        assert {r.id for r in store.recover(T0, everything=True)} == {mine.id, theirs.id}
        assert store.counts()["pending"] == 2


def test_recover_all_of_an_owners_tasks(store: Store) -> None:
    mine, theirs = store.enqueue([new(priority=1), new()], T0)
    store.claim(1, T0, "old-pool", LEASE_S)
    store.claim(1, T0, "other-pool", LEASE_S)
    assert [r.id for r in store.recover(T0 + 1, owner="old-pool")] == [mine.id]
    assert status_of(store, mine.id) == "pending"
    assert status_of(store, theirs.id) == "running"
    assert store.recover(T0 + 1, owner="nobody") == []


def test_recover_fails_a_task_out_of_attempts_as_lost(store: Store) -> None:
    task_id = store.enqueue([new(max_retries=1)], T0)[0].id
    now = T0
    for attempt in (1, 2):
        [claimed] = store.claim(1, now, OWNER, SHORT_LEASE_S)
        assert claimed.attempts == attempt
        store.started([(task_id, now, None)])
        now += 10
        [record] = expire(store, now)
    assert record.id == task_id and record.status == "failed"
    assert record.finished_at == now and record.lease_owner is None
    assert record.error is not None
    assert record.error["reason"] == "lost" and record.error["traceback"] == ""
    assert isinstance(record.error["message"], str) and record.error["message"]
    assert store.get(task_id) == record


def test_purge_deletes_only_old_finished_tasks(store: Store) -> None:
    records = store.enqueue([new(priority=9 - i) for i in range(6)], T0)
    ids = [r.id for r in records]
    claim_ids(store, 4)
    store.finish([ok(ids[0], now=T0 + 1), failed(ids[1], now=T0 + 2),
                  ok(ids[2], now=T0 + 50)])
    store.cancel(ids[4], "api", T0 + 1)
    assert store.purge(T0 + 10) == 3
    assert [store.get(i) is None for i in ids] == [True, True, False, False, True, False]
    assert store.purge(T0 + 10) == 0
    remaining = {r.id: r.status for r in store.list()[0]}
    assert remaining == {ids[2]: "succeeded", ids[3]: "running", ids[5]: "pending"}
    assert store.purge(T0 + 1000) == 1  # running and pending are never purged
    assert not [r for r in store.list()[0] if r.status in FINISHED]


def test_close_is_idempotent(open_url: Callable[[], Store]) -> None:
    store = open_url()
    store.close()
    store.close()


# -- schedule slots ---------------------------------------------------------------------------

def test_take_slot_takes_each_later_slot_once(store: Store) -> None:
    assert store.schedule_slots() == {}
    assert store.take_slot("tick", T0, T0 + 0.1)
    assert not store.take_slot("tick", T0, T0 + 0.2)  # the same slot again
    assert not store.take_slot("tick", T0 - 60, T0 + 0.3)  # an earlier one
    assert store.take_slot("tick", T0 + 60, T0 + 60.1)
    row = store.schedule_slots()["tick"]
    assert (row.schedule, row.slot, row.taken_at, row.task_id, row.task_slot) == (
        "tick", T0 + 60, T0 + 60.1, None, None)


def test_schedules_take_their_slots_independently(store: Store) -> None:
    assert store.take_slot("a", T0 + 60, T0)
    assert store.take_slot("b", T0, T0)
    assert not store.take_slot("a", T0, T0)
    assert {name: row.slot for name, row in store.schedule_slots().items()} == {
        "a": T0 + 60, "b": T0}


def test_slot_task_is_kept_until_a_later_run(store: Store) -> None:
    assert store.take_slot("tick", T0, T0)
    store.slot_task("tick", T0, "task-1")
    assert store.take_slot("tick", T0 + 1, T0 + 1)  # a slot passed without a run
    store.slot_task("tick", T0, "stale")  # no longer the last slot: ignored
    row = store.schedule_slots()["tick"]
    assert (row.slot, row.task_id, row.task_slot) == (T0 + 1, "task-1", T0)
    assert store.take_slot("tick", T0 + 2, T0 + 2)
    store.slot_task("tick", T0 + 2, "task-3")
    row = store.schedule_slots()["tick"]
    assert (row.slot, row.task_id, row.task_slot) == (T0 + 2, "task-3", T0 + 2)


def test_a_slot_stays_taken_after_its_task_is_purged_and_a_reopen(
        open_url: Callable[[], Store]) -> None:
    store = open_url()
    assert store.take_slot("tick", T0, T0)
    (task,) = store.enqueue([new(idempotency_key=f"schedule:tick@{T0}")], T0)
    store.slot_task("tick", T0, task.id)
    claim_ids(store)
    store.finish([ok(task.id)])
    assert store.purge(T0 + 2) == 1 and store.get(task.id) is None
    store.close()
    store = open_url()
    assert not store.take_slot("tick", T0, T0 + 3)
    assert store.schedule_slots()["tick"].task_id == task.id


def test_a_slot_taken_in_a_rolled_back_batch_is_not_taken(store: Store) -> None:
    with pytest.raises(RuntimeError), store.batch():
        assert store.take_slot("tick", T0, T0)
        raise RuntimeError("the turn failed")
    assert store.schedule_slots() == {}
    assert store.take_slot("tick", T0, T0)


def test_two_writers_racing_for_a_slot_take_it_once(open_url: Callable[[], Store],
                                                    store_url: str) -> None:
    first = open_url()
    results: list[bool] = []

    def race() -> None:  # a store is used from the thread that opened it
        second = open_store(store_url)
        try:
            results.append(second.take_slot("tick", T0, T0 + 0.5))
        finally:
            second.close()

    with first.batch():
        assert first.take_slot("tick", T0, T0)
        # The second writer waits for the first's transaction (or runs after
        # it): either way it must then see the slot taken.
        racer = threading.Thread(target=race)
        racer.start()
    racer.join(30)
    assert results == [False]
    assert first.schedule_slots()["tick"].taken_at == T0


# -- at scale and across a crash ----------------------------------------------------------

def test_every_task_is_claimed_exactly_once_at_scale(store: Store) -> None:
    enqueued: list[str] = []
    for i in range(40):
        batch = [new(priority=j % 3, group_id=f"g{j % 50}" if j % 5 == 0 else None, seq=i)
                 for j in range(500)]
        enqueued += [r.id for r in store.enqueue(batch, T0)]
    claimed: list[str] = []
    while batch_ids := claim_ids(store, 64):
        claimed += batch_ids
        store.finish([ok(i) for i in batch_ids])
    assert len(claimed) == len(set(claimed)) == 20_000
    assert set(claimed) == set(enqueued)
    assert store.counts()["succeeded"] == 20_000


_CHILD = """
import json, sys, time
from executor.store import NewTask, open_store
store = open_store(sys.argv[1])
ids = []
for i in range(20):
    batch = [NewTask(kind="job", payload=bytes([i, j]), max_retries=0, timeout_s=1.0)
             for j in range(50)]
    ids += [r.id for r in store.enqueue(batch, 1.0)]
print("ok", json.dumps(ids), flush=True)
time.sleep(600)
"""


def test_enqueued_tasks_survive_kill_9(store_url: str) -> None:
    repo = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, store_url], cwd=repo, env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 60)
        assert ready, "the child did not report within 60 s"
        word, ids_json = child.stdout.readline().split(" ", 1)
        assert word == "ok"
        ids = json.loads(ids_json)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    store = open_store(store_url)
    try:
        records = [store.get(i) for i in ids]
        assert len(ids) == 1000 and all(r is not None for r in records)
        assert store.counts()["pending"] == 1000
        assert {r.payload for r in records if r is not None} == {
            bytes([i, j]) for i in range(20) for j in range(50)}
    finally:
        store.close()


# -- opening ---------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["", "sqlite://", "sqlite:///", "mysql://db/x", "/tmp/x.db",
                                 "postgresq://u@h/db"])
def test_open_store_rejects_unknown_urls(url: str) -> None:
    with pytest.raises(StoreError, match="accepted"):
        open_store(url)


def test_sqlite_refuses_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match=str(path)):
        SQLiteStore(str(path))


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = str(tmp_path / "tasks.db")
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        SQLiteStore(path)


def test_sqlite_closed_store_raises_store_error(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "tasks.db"))
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get("x")


def test_sqlite_file_is_wal_with_full_sync_and_a_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "tasks.db"  # missing directories are created
    store = SQLiteStore(str(path))
    try:
        # synchronous is per connection, so it can only be read on the store's own:
        # FULL (2) for accepting work, NORMAL (1) for the transitions after it.
        from executor.store.records import NewTask
        store.enqueue([NewTask("k", b"", 0, 1.0)], 1.0)
        assert store._s.conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        store.claim(1, 2.0, "me", 10.0)
        assert store._s.conn.execute("PRAGMA synchronous").fetchone()[0] == 1
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        db.close()
    finally:
        store.close()


_SCHEMA_1 = (  # what offload wrote before schema 2
    """CREATE TABLE tasks (seqno INTEGER PRIMARY KEY, id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind <> ''), status TEXT NOT NULL CHECK (status IN
    ('pending', 'running', 'retrying', 'succeeded', 'failed', 'cancelled')),
    attempts INTEGER NOT NULL CHECK (attempts >= 0),
    max_retries INTEGER NOT NULL CHECK (max_retries >= 0),
    timeout_s REAL NOT NULL CHECK (timeout_s > 0), priority INTEGER NOT NULL,
    not_before REAL NOT NULL, created_at REAL NOT NULL, payload BLOB NOT NULL,
    group_id TEXT, seq INTEGER NOT NULL, idempotency_key TEXT, ref TEXT, started_at REAL,
    finished_at REAL, result BLOB, error TEXT, progress TEXT, cancelled_by TEXT,
    lease_owner TEXT, lease_expires_at REAL)""",
    "CREATE UNIQUE INDEX tasks_id ON tasks (id)",
    "CREATE UNIQUE INDEX tasks_idempotency ON tasks (idempotency_key)"
    " WHERE idempotency_key IS NOT NULL",
    "CREATE INDEX tasks_waiting ON tasks (priority DESC, seqno, not_before, group_id, seq)"
    " WHERE status IN ('pending', 'retrying')",
    "CREATE INDEX tasks_due ON tasks (not_before) WHERE status IN ('pending', 'retrying')",
    "CREATE INDEX tasks_group ON tasks (group_id, seq)"
    " WHERE group_id IS NOT NULL AND status IN ('pending', 'running', 'retrying')",
    "CREATE INDEX tasks_unfinished ON tasks (status, seqno)"
    " WHERE status IN ('pending', 'running', 'retrying')",
    "CREATE INDEX tasks_finished ON tasks (finished_at)"
    " WHERE status IN ('succeeded', 'failed', 'cancelled')",
    "PRAGMA user_version = 1",
)


def test_sqlite_upgrades_a_version_1_file_keeping_its_tasks(tmp_path: Path) -> None:
    path = str(tmp_path / "tasks.db")
    db = sqlite3.connect(path, isolation_level=None)
    for statement in _SCHEMA_1:
        db.execute(statement)
    for seqno, (task_id, status, group, key) in enumerate(
            [("a", "succeeded", None, None), ("b", "running", "g", None),
             ("c", "pending", "g", "key-c"), ("d", "pending", None, None)], start=7):
        db.execute("INSERT INTO tasks (seqno, id, kind, status, attempts, max_retries,"
                   " timeout_s, priority, not_before, created_at, payload, group_id, seq,"
                   " idempotency_key, lease_owner, lease_expires_at, finished_at)"
                   " VALUES (?, ?, 'job', ?, 0, 2, 10.0, 0, ?, ?, x'90', ?, ?, ?, ?, ?, ?)",
                   (seqno, task_id, status, T0, T0, group, seqno, key,
                    OWNER if status == "running" else None,
                    T0 + LEASE_S if status == "running" else None,
                    T0 if status == "succeeded" else None))
    db.execute("INSERT INTO tasks (seqno, id, kind, status, attempts, max_retries, timeout_s,"
               " priority, not_before, created_at, payload, group_id, seq)"
               " VALUES (11, 'e', 'job', 'pending', 0, 2, 10.0, 0, ?, ?, x'90', 'h', -3)",
               (T0, T0))  # version 1 took a negative seq
    db.close()
    store = SQLiteStore(path)
    try:
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3
        indexes = {name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
        db.close()
        assert indexes == {"tasks_id", "tasks_idempotency", "tasks_waiting", "tasks_due",
                           "tasks_group", "tasks_running", "tasks_finished"}
        assert store.counts() == {**dict.fromkeys(STATUSES, 0), "succeeded": 1,
                                  "running": 1, "pending": 3}
        assert [r.id for r in store.list(limit=10)[0]] == ["e", "d", "c", "b", "a"]
        assert store.get("e").seq == 0  # type: ignore[union-attr]
        assert store.enqueue([new(idempotency_key="key-c")], T0)[0].id == "c"
        assert claim_ids(store) == ["d", "e"]  # c waits behind b, its group's running task
        store.finish([ok("b")])
        assert claim_ids(store) == ["c"]
        assert store.purge(T0 + 1) == 1 and store.get("a") is None
    finally:
        store.close()


def test_counts_stay_exact_through_every_transition_and_reopen(
        open_url: Callable[[], Store]) -> None:
    store = open_url()
    ids = [r.id for r in store.enqueue([new() for _ in range(6)], 1.0)]
    claimed = store.claim(4, 2.0, "me", 10.0)
    store.finish([Outcome(claimed[0].id, "succeeded", 3.0),
                  Outcome(claimed[1].id, "failed", 3.0, error={"reason": "error",
                                                               "message": "x",
                                                               "traceback": ""})])
    store.cancel(ids[5], "test", 3.0)
    store.cancel(claimed[2].id, "test", 3.0, force=True)
    with pytest.raises(RuntimeError), store.batch():  # a rolled-back batch counts nothing
        store.finish([Outcome(claimed[3].id, "succeeded", 4.0)])
        raise RuntimeError("roll back")
    expected = {"pending": 1, "running": 1, "retrying": 0, "succeeded": 1, "failed": 1,
                "cancelled": 2}
    assert store.counts() == expected
    assert store.purge(older_than=3.5) == 4
    expected.update(succeeded=0, failed=0, cancelled=0)
    assert store.counts() == expected
    store.close()
    assert open_url().counts() == expected


def test_a_rolled_back_batch_counts_nothing_even_after_a_failed_call_in_it(
        store: Store) -> None:
    task_id = store.enqueue([new()], T0)[0].id
    claim_ids(store)
    with pytest.raises(RuntimeError), store.batch():
        store.finish([ok(task_id)])
        with pytest.raises(StoreError):  # rolled back alone; the batch goes on
            store.enqueue([new(max_retries=-1)], T0, sync=False)
        raise RuntimeError("roll back")
    store.enqueue([new()], T0)  # a later commit carries no count of the rolled-back batch
    assert status_of(store, task_id) == "running"
    assert store.counts() == {"pending": 1, "running": 1, "retrying": 0, "succeeded": 0,
                              "failed": 0, "cancelled": 0}
