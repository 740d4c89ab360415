"""What the stores hand around: task statuses, the records of tasks (as
submitted, as stored, as they end), schedule slots, and the errors a store
raises. The contract that uses them is ``executor.store.base``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

Status = Literal["pending", "running", "retrying", "succeeded", "failed", "cancelled"]
STATUSES: tuple[Status, ...] = ("pending", "running", "retrying", "succeeded", "failed",
                                "cancelled")
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class StoreError(Exception):
    """The store cannot do what was asked (bad URL, corrupt file, illegal transition)."""


class StoreLocked(StoreError):
    """Another process holds the store's single-writer lock (SQLite): another
    pool is using it, or one that is stopping has not let go yet."""


class BatchLost(StoreError):
    """Inside ``batch()``: the batch's whole transaction is gone (the backend
    rolled it back, e.g. on a full disk), so nothing of it will be stored and
    nothing more can be written in it; raised by the call that lost it and
    by every write after. Callers let it end the batch instead of retrying."""


class NewTask(NamedTuple):
    """A task as submitted, before the store gives it an id.

    A named tuple, not a frozen dataclass: the pool makes one per submitted
    task, and a frozen dataclass's ``__init__`` costs twice as much."""

    kind: str
    payload: bytes  # executor.wire.codec.encode_call(args, kwargs)
    max_retries: int
    timeout_s: float
    priority: int = 0
    not_before: float = 0.0  # seconds since the epoch; 0 = now
    group_id: str | None = None  # calls of one BackgroundTasks run in seq order
    seq: int = 0  # >= 0 (a store refuses a negative one)
    idempotency_key: str | None = None
    ref: str | None = None  # "module:qualname" for BackgroundTasks functions not @task-registered


@dataclass
class TaskRecord:
    """One task as the store holds it. ``payload``/``result`` are codec bytes."""

    id: str
    kind: str
    status: Status
    attempts: int
    max_retries: int
    timeout_s: float
    priority: int
    not_before: float
    created_at: float
    payload: bytes = b""
    group_id: str | None = None
    seq: int = 0
    idempotency_key: str | None = None
    ref: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    result: bytes | None = None
    error: dict[str, Any] | None = None  # {"reason", "message", "traceback"}
    progress: dict[str, Any] | None = None  # {"value": float, "message": str}
    cancelled_by: str | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    lease_token: int | None = None  # the current claim's fencing token (shared stores)
    extra: dict[str, Any] = field(default_factory=dict)


class Outcome(NamedTuple):
    """How a running task ended, for ``Store.finish`` (a named tuple, as NewTask)."""

    id: str
    status: Literal["succeeded", "failed"]
    finished_at: float
    started_at: float | None = None
    result: bytes | None = None
    error: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    token: int | None = None  # the claim's lease_token; a stale one is skipped


class ScheduleSlot(NamedTuple):
    """A schedule's row (``Store.take_slot``): its last slot taken and its last run."""

    schedule: str
    slot: float  # seconds since the epoch
    taken_at: float  # when the slot was taken, by the taking pool's clock
    task_id: str | None = None  # the last run's task (None: no slot has run yet)
    task_slot: float | None = None  # the slot that task runs for
