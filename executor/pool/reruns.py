"""Running failed or cancelled tasks again (ops ``retry`` and ``retry_failed``).

A re-run is the *same* task: ``Store.retry`` puts it back to ``pending`` with
its attempts reset and its outcome cleared, and the executor runs the call
stored in its ``payload`` (never a rendering of the arguments). Why not a new
task linked to the old one: the id a client holds (``Location``, a poll
loop, an ``Idempotency-Key``) keeps leading to the task that matters, the
idempotency key keeps meaning one task, a group's order is kept, and no
backend needs a new column. The failure that was cleared stays in the log
and the metrics.
"""

from __future__ import annotations

import time
from typing import Any

from executor.pool.ops import record_to_wire
from executor.pool.port import PoolPort
from executor.pool.specs import Invalid

RETRYABLE = ("failed", "cancelled")
RETRY_LIMIT_MAX = 1000
"""The most tasks one ``retry_failed`` puts back (HTTP asks for 100 unless told)."""


def retry(pool: PoolPort, task_id: Any) -> dict[str, Any]:
    """The ``retry`` op: the record, pending again. ``not_found``; ``conflict``
    if the task has not ended, succeeded, or is still being stopped."""
    if not isinstance(task_id, str):
        raise Invalid("invalid", "id must be a string", "id")
    rec = pool.store.get(task_id)
    if rec is None:
        raise Invalid("not_found", f"no task with id {task_id!r}", "id")
    if rec.status not in RETRYABLE:
        what = "it succeeded" if rec.status == "succeeded" else f"it is {rec.status}"
        raise Invalid("conflict", f"task {task_id} cannot run again: {what}; only a failed "
                                  "or cancelled task can", "id")
    _check_stopped(pool, task_id)
    changed = pool.store.retry([task_id], time.time())
    if not changed:
        raise Invalid("conflict", f"task {task_id} could not be put back to run", "id")
    pool.note_due(time.time())
    return record_to_wire(changed[0])


def retry_failed(pool: PoolPort, args: dict[str, Any]) -> dict[str, Any]:
    """The ``retry_failed`` op: ``{"ids": [...]}``, the failed tasks put back."""
    kind = args.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise Invalid("invalid", "kind must be a string", "kind")
    bounds: dict[str, float | None] = {}
    for name in ("finished_after", "finished_before"):
        value = args.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise Invalid("invalid", f"{name} must be a number of seconds since the epoch",
                          name)
        bounds[name] = value
    limit = args.get("limit", 100)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= RETRY_LIMIT_MAX:
        raise Invalid("invalid", f"limit must be an integer from 1 to {RETRY_LIMIT_MAX}", "limit")
    ids = pool.store.failed_ids(kind=kind, limit=limit, **bounds)
    # A failed task is never in flight, but its executor may not be reaped yet.
    held = pool.fleet.handout.inflight
    ids = [i for i in ids if i not in held and pool.outcome_pending(i) is None]
    changed = pool.store.retry(ids, time.time())
    if changed:
        pool.note_due(time.time())
    return {"ids": [r.id for r in changed]}


def _check_stopped(pool: PoolPort, task_id: str) -> None:
    # A task cancelled with force keeps its executor until the kill is reaped:
    # running it again before then would hand the same id out twice.
    if task_id in pool.fleet.handout.inflight or pool.outcome_pending(task_id) is not None:
        raise Invalid("conflict", f"task {task_id} is still being stopped; retry in a moment",
                      "id")
