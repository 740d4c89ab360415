"""What ``/queue/stats`` and the metrics show of the executors (read only).

Pure functions of the executors' ``Slot`` objects: one row per executor,
the executors per state, those up (for ``/readyz``), and the task places
busy and free. An executor
with no task counts ``async_concurrency`` places (what an ``async def``
task of the default concurrency could use).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from executor.pool.slots import ExecutorState, Slot


def rows(slots: Iterable[Slot], async_concurrency: int) -> list[dict[str, Any]]:
    """One row per executor for ``/queue/stats``: ``running`` (ids of its
    running tasks), ``free`` (how many more it could start now; 0 unless it
    takes tasks) and, kept for older clients, ``task_id`` (the first running one)."""
    out = []
    for slot in slots:
        running = list(slot.running)
        out.append({"pid": slot.pid, "state": slot.state.value,
                    "task_id": running[0] if running else None, "running": running,
                    "free": slot.free(async_concurrency) if slot.accepting else 0,
                    "tasks_run": slot.tasks_run, "rss_mb": slot.rss_mb})
    return out


def states(slots: Iterable[Slot]) -> dict[str, int]:
    """Executors per state (dead ones excluded; a state with none is absent)."""
    out: dict[str, int] = {}
    for slot in slots:
        if slot.state is not ExecutorState.DEAD:
            out[slot.state.value] = out.get(slot.state.value, 0) + 1
    return out


def up(slots: Iterable[Slot]) -> int:
    """How many executors are up: forked (a pid is known) and idle or busy."""
    return sum(1 for s in slots if s.pid is not None
               and s.state in (ExecutorState.IDLE, ExecutorState.BUSY))


def task_places(slots: Iterable[Slot], async_concurrency: int) -> dict[str, int]:
    """``{"busy": tasks running, "free": tasks that could start now}``; only
    the executors that take tasks count free places."""
    slots = list(slots)
    return {"busy": sum(len(s.running) for s in slots),
            "free": sum(s.free(async_concurrency) for s in slots if s.accepting)}
