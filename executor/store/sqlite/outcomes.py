"""How tasks end or go back to the queue on SQLite: finish, reschedule,
cancel, retry, purge.

Each function runs its statements on the connection it is given, inside
the caller's write transaction (power-safe or not is the store's choice),
and returns what changed; the store turns that into its finished counts.
Every write about a running task clears its lease.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from typing import Any

from executor.store.columns import to_json
from executor.store.records import Outcome, TaskRecord
from executor.store.sqlite.schema import CHUNK, COLUMNS, COLUMNS_NO_PAYLOAD, ENDED, record


def finish(db: sqlite3.Connection, outcomes: Sequence[Outcome]) -> list[TaskRecord]:
    """Record how running tasks ended (statuses already checked by the
    store); ids not running are skipped, and of a repeated id the first
    outcome wins. ``started_at`` is kept unless the outcome gives one.
    Returns the changed records, without payload."""
    by_id = {o.id: o for o in reversed(outcomes)}  # the first outcome of an id wins
    rows = [(o.id, o.status, o.finished_at, o.started_at, o.result, to_json(o.error),
             to_json(o.progress)) for o in reversed(by_id.values())]
    out: list[TaskRecord] = []
    # One UPDATE ... FROM (VALUES ...) per chunk: no SELECT first, one
    # statement for the whole turn's outcomes (the pool's hot path).
    for i in range(0, len(rows), CHUNK):
        chunk = rows[i:i + CHUNK]
        values = ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
        params = [p for row in chunk for p in row]
        out += [record(row) for row in db.execute(
            "UPDATE tasks SET status = v.column2, finished_at = v.column3,"
            " started_at = coalesce(v.column4, tasks.started_at), result = v.column5,"
            " error = v.column6, progress = v.column7, lease_owner = NULL,"
            f" lease_expires_at = NULL FROM (VALUES {values}) AS v"
            " WHERE tasks.id = v.column1 AND tasks.status = 'running'"
            f" RETURNING {COLUMNS_NO_PAYLOAD}", params).fetchall()]
    return out


def reschedule(db: sqlite3.Connection, task_id: str, not_before: float,
               error: dict[str, Any] | None, count_attempt: bool) -> TaskRecord | None:
    """Put a running task back, due at ``not_before``: ``retrying`` with the
    attempt kept and ``error`` stored, or (``count_attempt`` False)
    ``pending`` with the claim's attempt undone. ``None`` if it is missing
    or not running."""
    status, undo = ("retrying", 0) if count_attempt else ("pending", 1)
    row = db.execute(
        "UPDATE tasks SET status = ?, attempts = max(attempts - ?, 0), not_before = ?,"
        " error = coalesce(?, error), lease_owner = NULL, lease_expires_at = NULL"
        f" WHERE id = ? AND status = 'running' RETURNING {COLUMNS}",
        (status, undo, not_before, to_json(error), task_id)).fetchone()
    return None if row is None else record(row)


def cancel(db: sqlite3.Connection, task_id: str, by: str, now: float, force: bool
           ) -> TaskRecord | None:
    """Cancel the task if it is pending or retrying, or running and
    ``force``. Returns its record if this call cancelled it, else ``None``
    (missing, finished, or running without ``force``)."""
    row = db.execute(
        "UPDATE tasks SET status = 'cancelled', cancelled_by = ?, finished_at = ?,"
        " lease_owner = NULL, lease_expires_at = NULL WHERE id = ?"
        " AND (status IN ('pending', 'retrying') OR (status = 'running' AND ?))"
        f" RETURNING {COLUMNS}", (by, now, task_id, force)).fetchone()
    return None if row is None else record(row)


def retry(db: sqlite3.Connection, task_ids: Sequence[str], now: float
          ) -> tuple[list[TaskRecord], Counter[str]]:
    """Put the failed or cancelled tasks among ``task_ids`` back to
    ``pending`` (attempts 0, due at ``now``, outcome and lease cleared);
    other ids are skipped, a repeated one counts once. Returns the changed
    records, without payload, and how many left each finished status."""
    ids = list(dict.fromkeys(task_ids))
    out: list[TaskRecord] = []
    left: Counter[str] = Counter()
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        marks = ",".join("?" * len(chunk))
        where = f"id IN ({marks}) AND status IN ('failed', 'cancelled')"
        left.update({status: n for status, n in db.execute(
            f"SELECT status, count(*) FROM tasks WHERE {where} GROUP BY status", chunk)})
        out += [record(row) for row in db.execute(
            "UPDATE tasks SET status = 'pending', attempts = 0, not_before = ?,"
            " started_at = NULL, finished_at = NULL, result = NULL, error = NULL,"
            " progress = NULL, cancelled_by = NULL, lease_owner = NULL,"
            f" lease_expires_at = NULL WHERE {where} RETURNING {COLUMNS_NO_PAYLOAD}",
            [now, *chunk])]
    return out, left


def purge(db: sqlite3.Connection, older_than: float) -> list[str]:
    """Delete finished tasks with ``finished_at < older_than``; returns the
    status of each one deleted."""
    gone = db.execute(f"DELETE FROM tasks INDEXED BY tasks_finished WHERE {ENDED}"
                      " AND finished_at < ? RETURNING status", (older_than,)).fetchall()
    return [status for (status,) in gone]
