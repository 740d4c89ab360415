"""Small helpers shared by the executor tests (real pool, no mocks)."""

from __future__ import annotations

import sqlite3
from typing import Any

from executor.wire.codec import decode_value, encode_call
from executor.wire.errors import PoolError
from tests.support.procs import PoolHandle, wait_for


def result(rec: dict[str, Any]) -> Any:
    """The decoded result of a finished record."""
    return decode_value(rec["result"])


def get(pool: PoolHandle, task_id: str) -> dict[str, Any]:
    """The task's record now."""
    rec: dict[str, Any] = pool.call("get", {"id": task_id})
    return rec


def submit_many(pool: PoolHandle, kind: str, calls: list[tuple[Any, ...]],
                **opts: Any) -> list[str]:
    """Submit one task per argument tuple in ``calls``, in one request."""
    specs = [{"kind": kind, "payload": encode_call(list(args), {}), **opts} for args in calls]
    return [t["id"] for t in pool.call("submit", {"tasks": specs})["tasks"]]


def stored_status(pool: PoolHandle, task_id: str) -> str:
    """The status in the store file, read-only, bypassing the pool's view."""
    path = pool.env.settings["store_url"][len("sqlite:///"):]
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT status FROM tasks WHERE id = ?", (task_id,)).fetchone()
    finally:
        db.close()
    return str(row[0])


def executor_running(pool: PoolHandle, task_id: str, timeout_s: float = 10) -> int:
    """Wait until an executor reports ``task_id`` as its running task; its pid."""
    def pid() -> int:
        for row in pool.call("stats")["executors"]:
            if row["task_id"] == task_id and row["pid"]:
                return int(row["pid"])
        return 0
    return wait_for(pid, timeout_s, what=f"task {task_id} to start")


def wait_status(pool: PoolHandle, task_id: str, status: str,
                timeout_s: float = 10) -> dict[str, Any]:
    """Wait until the task's record has ``status``; return that record."""
    def record() -> dict[str, Any]:
        rec = get(pool, task_id)
        return rec if rec["status"] == status else {}
    return wait_for(record, timeout_s, what=f"task {task_id} to be {status}")


def live_executor_pids(pool: PoolHandle) -> set[int]:
    """Pids of the executors that are up (idle or busy)."""
    return {row["pid"] for row in pool.call("stats")["executors"]
            if row["state"] in ("idle", "busy") and row["pid"]}


def pool_error(pool: PoolHandle, op: str, args: dict[str, Any]) -> PoolError:
    """Call ``op`` expecting the pool to refuse it; return the error."""
    try:
        pool.call(op, args)
    except PoolError as exc:
        return exc
    raise AssertionError(f"{op} {args} was accepted; expected an error")


def open_gate(pool: PoolHandle, name: str) -> None:
    """Let every ``gate`` task waiting on ``name`` go on."""
    (pool.env.trace_dir / name).write_text("open\n")
