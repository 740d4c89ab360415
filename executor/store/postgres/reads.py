"""Reads of the PostgreSQL store: one record, a page, counts, the next due
time, failed ids, schedule slots.

Each runs one statement in autocommit (its own snapshot), or inside the
enclosing batch's transaction. Nothing here locks rows.
"""

from __future__ import annotations

from typing import Any, cast

import psycopg

from executor.store.paging import page_filter, page_rows
from executor.store.postgres.rows import COLUMNS, COLUMNS_NO_PAYLOAD, record
from executor.store.records import STATUSES, ScheduleSlot, TaskRecord


def select(conn: psycopg.Connection, where: str, params: Any = ()) -> list[TaskRecord]:
    """Records matching ``where`` (a trusted SQL condition with ``%s`` marks)."""
    rows = conn.execute(f"SELECT {COLUMNS} FROM offload_tasks WHERE {where}",
                        params).fetchall()
    return [record(row) for row in rows]


def page(conn: psycopg.Connection, status: str | None, kind: str | None, limit: int,
         cursor: str | None) -> tuple[list[TaskRecord], str | None]:
    """Up to ``limit`` records, newest first, without payload, and the cursor of
    the next page (a ``seqno``), as ``Store.list``. Raises StoreError for an
    unknown status, a limit below 1 or a bad cursor."""
    where, params = page_filter(status, kind, limit, cursor, "%s")
    rows, next_cursor = page_rows(conn.execute(
        f"SELECT {COLUMNS_NO_PAYLOAD}, seqno FROM offload_tasks WHERE {where}"
        " ORDER BY seqno DESC LIMIT %s", (*params, limit + 1)).fetchall(), limit)
    return [record(row) for row in rows], next_cursor


def counts(conn: psycopg.Connection) -> dict[str, int]:
    """Tasks per status in the whole queue (every pool's), zeros included:
    unfinished ones counted from their partial indexes, finished ones from
    the shards of ``offload_counts`` that the writers keep."""
    out: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for status, n in conn.execute(
            "SELECT status, count(*) FROM offload_tasks"
            " WHERE status IN ('pending', 'running', 'retrying') GROUP BY status"
            " UNION ALL SELECT status, sum(n) FROM offload_counts GROUP BY status"):
        out[status] = int(n)
    return out


def next_due(conn: psycopg.Connection) -> float | None:
    """Earliest ``not_before`` among pending/retrying tasks, or ``None``."""
    row = conn.execute("SELECT min(not_before) FROM offload_tasks"
                       " WHERE status IN ('pending', 'retrying')").fetchone()
    return None if row is None or row[0] is None else cast(float, row[0])


def failed_ids(conn: psycopg.Connection, kind: str | None, finished_after: float | None,
               finished_before: float | None, limit: int) -> list[str]:
    """Ids of up to ``limit`` failed tasks matching, the oldest failure first."""
    where, params = ["status = 'failed'"], []
    for clause, value in (("kind = %s", kind), ("finished_at >= %s", finished_after),
                          ("finished_at < %s", finished_before)):
        if value is not None:
            where.append(clause)
            params.append(value)
    rows = conn.execute(f"SELECT id FROM offload_tasks WHERE {' AND '.join(where)}"
                        " ORDER BY finished_at, seqno LIMIT %s", [*params, limit])
    return [task_id for (task_id,) in rows]


def schedule_slots(conn: psycopg.Connection) -> dict[str, ScheduleSlot]:
    """Every schedule's row, by name."""
    rows = conn.execute("SELECT schedule, slot, taken_at, task_id, task_slot"
                        " FROM offload_schedule_slots").fetchall()
    return {row[0]: ScheduleSlot(*row) for row in rows}
