"""``cancel`` against an outcome that arrived but waits for the turn's write,
on a stand-in pool (the race is one loop turn wide: no process can time it)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from executor.pool.requests import Requests
from executor.pool.specs import Invalid
from executor.store import TaskRecord


def _requests(pending_outcome: str | None, cancelled: list[str]) -> Requests:
    rec = TaskRecord(id="t1", kind="k", status="running", attempts=1, max_retries=0,
                     timeout_s=10.0, priority=0, not_before=0.0, created_at=0.0)

    def cancel(task_id: str, *args: Any, **kwargs: Any) -> TaskRecord:
        cancelled.append(task_id)
        return TaskRecord(**{**rec.__dict__, "status": "cancelled"})

    pool = SimpleNamespace(
        fleet=SimpleNamespace(handout=SimpleNamespace(
            inflight={}, take_back=lambda task_id: False,
            cancel_running=lambda task_id, by: False, forget=lambda task_id: None)),
        store=SimpleNamespace(get=lambda task_id: rec, cancel=cancel),
        outcome_pending=lambda task_id: pending_outcome,
        metrics=SimpleNamespace(task_finished=lambda kind, status: None))
    return Requests(pool)  # type: ignore[arg-type]


def test_a_force_cancel_does_not_overwrite_an_outcome_waiting_for_its_turn() -> None:
    cancelled: list[str] = []
    req = _requests("succeeded", cancelled)
    with pytest.raises(Invalid) as info:
        req.op_cancel(None, 1, {"id": "t1", "force": True})  # type: ignore[arg-type]
    assert (info.value.code, info.value.field) == ("conflict", "id")
    assert "already ended: succeeded" in info.value.message
    assert cancelled == []


def test_without_a_pending_outcome_a_force_cancel_goes_ahead() -> None:
    cancelled: list[str] = []
    answer = _requests(None, cancelled).op_cancel(None, 1,  # type: ignore[arg-type]
                                                  {"id": "t1", "force": True})
    assert cancelled == ["t1"] and answer["status"] == "cancelled"  # type: ignore[index]
