"""Results and progress with real executors: progress while running and kept
after, results that round-trip, oversize results refused, records purged."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable
from typing import Any

from executor.wire.errors import PoolError
from tests.executor.helpers import executor_running, get, open_gate, result
from tests.support.procs import PoolHandle, wait_for


def test_progress_updates_while_running_and_is_kept(pool: PoolHandle) -> None:
    # gated_progress reports 0.25, waits for the gate "prog.1", reports 0.5,
    # waits for "prog.2": each value is seen while the task is running.
    task_id = pool.submit("gated_progress", "prog")

    def running_with(value: float) -> dict[str, Any]:
        rec = get(pool, task_id)
        ok = rec["status"] == "running" and (rec["progress"] or {}).get("value") == value
        return rec if ok else {}

    first = wait_for(lambda: running_with(0.25), what="progress 0.25 while running")
    assert first["progress"] == {"value": 0.25, "message": "step 1 of 2"}
    open_gate(pool, "prog.1")
    second = wait_for(lambda: running_with(0.5), what="progress 0.5 while running")
    assert second["progress"] == {"value": 0.5, "message": "step 2 of 2"}
    open_gate(pool, "prog.2")
    rec = pool.wait(task_id)
    assert rec["status"] == "succeeded"
    assert result(rec) == "done"
    assert rec["progress"] == {"value": 0.5, "message": "step 2 of 2"}  # kept after the end


def test_results_round_trip_everyday_types(pool: PoolHandle) -> None:
    rec = pool.wait(pool.submit("typed_values", 7))
    assert rec["status"] == "succeeded"
    assert result(rec) == {
        "naive": dt.datetime(2024, 2, 29, 12, 30, 15, 123456),
        "aware": dt.datetime(2024, 2, 29, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        "day": dt.date(2024, 2, 29),
        "uuid": uuid.UUID(int=7),
        "amount": decimal.Decimal("12345678901234567890.0001"),
        "raw": bytes(range(8)),
        "nested": [{"when": dt.date(2000, 1, 8)}, [1, 2]],  # tuples come back as lists
    }
    args = (dt.datetime(2023, 1, 2, 3, 4, 5, tzinfo=dt.UTC), uuid.uuid4(),
            decimal.Decimal("-0.10"), dt.date(1999, 12, 31))
    echoed = result(pool.wait(pool.submit("echo", *args, kwargs={"n": [1.5, None, True]})))
    assert echoed == {"args": list(args), "kwargs": {"n": [1.5, None, True]}}
    assert str(echoed["args"][2]) == "-0.10"  # Decimal keeps its exponent
    assert result(pool.wait(pool.submit("noop"))) is None


def test_oversize_result_fails_with_a_message_naming_the_limit(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(max_result_bytes=1000)
    rec = pool.wait(pool.submit("big_result", 5000, max_retries=3))
    assert rec["status"] == "failed"
    assert rec["error"]["reason"] == "error"
    assert "max_result_bytes (1000)" in rec["error"]["message"]
    assert rec["attempts"] == 1  # the same result would be refused again: not retried
    assert rec["result"] is None
    small = pool.wait(pool.submit("big_result", 500))
    assert small["status"] == "succeeded"
    assert result(small) == "x" * 500


def test_finished_records_are_purged_after_result_ttl(
        make_pool: Callable[..., PoolHandle]) -> None:
    pool = make_pool(result_ttl_s=1)
    running = pool.submit("gate", "purge-gate")
    executor_running(pool, running)
    finished = [pool.submit("noop"), pool.submit("raise_value_error")]
    for task_id in finished:
        assert pool.wait(task_id)["status"] in ("succeeded", "failed")

    def purged(task_id: str) -> bool:
        try:
            get(pool, task_id)
        except PoolError as exc:
            return exc.code == "not_found"
        return False

    wait_for(lambda: all(purged(i) for i in finished), 10, what="finished records purged")
    assert get(pool, running)["status"] == "running"  # unfinished work is never purged
    open_gate(pool, "purge-gate")
    assert pool.wait(running)["status"] == "succeeded"
