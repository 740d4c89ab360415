"""Reads of the SQLite store: records, a page, counts, the next due time,
failed ids, schedule slots.

Each runs one statement on the store's connection: in WAL mode a read
sees the last commit (or, inside the enclosing batch, the batch's own
writes) and never waits for a writer. Nothing here writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, cast

from executor.store.paging import page_filter, page_rows
from executor.store.records import STATUSES, ScheduleSlot, TaskRecord
from executor.store.sqlite.schema import COLUMNS, COLUMNS_NO_PAYLOAD, ENDED, record


def select(db: sqlite3.Connection, where: str, params: Sequence[Any] = ()) -> list[TaskRecord]:
    """Records matching ``where`` (a trusted SQL condition with ``?`` marks)."""
    rows = db.execute(f"SELECT {COLUMNS} FROM tasks WHERE {where}", params)
    return [record(row) for row in rows]


def page(db: sqlite3.Connection, status: str | None, kind: str | None, limit: int,
         cursor: str | None) -> tuple[list[TaskRecord], str | None]:
    """Up to ``limit`` records, newest first, without payload, and the cursor of
    the next page (a ``seqno``), as ``Store.list``. Raises StoreError for an
    unknown status, a limit below 1 or a bad cursor."""
    where, params = page_filter(status, kind, limit, cursor, "?")
    rows, next_cursor = page_rows(db.execute(
        f"SELECT {COLUMNS_NO_PAYLOAD}, seqno FROM tasks WHERE {where}"
        " ORDER BY seqno DESC LIMIT ?", (*params, limit + 1)).fetchall(), limit)
    return [record(row) for row in rows], next_cursor


def finished(db: sqlite3.Connection) -> dict[str, int]:
    """Finished tasks per status, counted from the table (the store does it
    once, at open, and keeps the counts itself from then on)."""
    return dict(db.execute(f"SELECT status, count(*) FROM tasks WHERE {ENDED} GROUP BY status"))


def counts(db: sqlite3.Connection, finished: Mapping[str, int]) -> dict[str, int]:
    """Tasks per status, zeros included: ``finished`` as the store keeps them,
    unfinished ones counted from their partial indexes."""
    out: dict[str, int] = dict.fromkeys(STATUSES, 0)
    out.update(finished)
    out.update(db.execute(
        "SELECT status, count(*) FROM tasks INDEXED BY tasks_waiting"
        " WHERE status IN ('pending', 'retrying') GROUP BY status"))
    out["running"] = db.execute(
        "SELECT count(*) FROM tasks INDEXED BY tasks_running WHERE status = 'running'"
    ).fetchone()[0]
    return out


def next_due(db: sqlite3.Connection) -> float | None:
    """Earliest ``not_before`` among pending/retrying tasks, or ``None``."""
    row = db.execute(
        "SELECT not_before FROM tasks INDEXED BY tasks_due"
        " WHERE status IN ('pending', 'retrying') ORDER BY not_before LIMIT 1").fetchone()
    return None if row is None else cast(float, row[0])


def failed_ids(db: sqlite3.Connection, kind: str | None, finished_after: float | None,
               finished_before: float | None, limit: int) -> list[str]:
    """Ids of up to ``limit`` failed tasks matching, the oldest failure first."""
    where, params = ["status = 'failed'"], []
    for clause, value in (("kind = ?", kind), ("finished_at >= ?", finished_after),
                          ("finished_at < ?", finished_before)):
        if value is not None:
            where.append(clause)
            params.append(value)
    rows = db.execute(f"SELECT id FROM tasks WHERE {' AND '.join(where)}"
                      " ORDER BY finished_at, seqno LIMIT ?", [*params, limit])
    return [task_id for (task_id,) in rows]


def schedule_slots(db: sqlite3.Connection) -> dict[str, ScheduleSlot]:
    """Every schedule's row, by name."""
    rows = db.execute("SELECT schedule, slot, taken_at, task_id, task_slot FROM schedule_slots")
    return {row[0]: ScheduleSlot(*row) for row in rows}
