"""Task records as the HTTP API shows them, built from the pool's wire records.

The JSON record has exactly these keys: ``id``, ``kind``, ``status``,
``attempts``, ``max_retries``, ``timeout_s``, ``priority``, ``not_before``,
``created_at``, ``started_at``, ``finished_at`` (epoch seconds or ``null``),
``progress``, ``error`` (``{"reason", "message", "traceback"}`` or ``null``),
``cancelled_by`` and ``result`` (the task's return value made JSON-safe, or
``null``).
"""

from __future__ import annotations

import math
from typing import Any

from executor.store.records import FINISHED
from executor.wire.codec import decode_value, to_json_safe

_COPIED = ("id", "kind", "status", "attempts", "max_retries", "timeout_s", "priority",
           "not_before", "created_at", "started_at", "finished_at", "progress", "error",
           "cancelled_by")


def to_json(wire: dict[str, Any]) -> dict[str, Any]:
    """The API record for a wire record (``executor.pool.ops.record_to_wire``)."""
    get = wire.get
    out = {name: get(name) for name in _COPIED}
    result = get("result")
    out["result"] = to_json_safe(decode_value(result)) if result is not None else None
    return out


def retry_after_s(wire: dict[str, Any], now: float) -> int | None:
    """Seconds a poller should wait before asking again, or ``None`` once finished.

    1 for a task that is pending now or running; for a delayed or retrying
    task, the whole seconds until its ``not_before`` (at least 1).
    """
    status = wire.get("status")
    if status in FINISHED:
        return None
    not_before = wire.get("not_before") or 0.0
    if status in ("pending", "retrying") and not_before > now + 1:
        return math.ceil(not_before - now)
    return 1
