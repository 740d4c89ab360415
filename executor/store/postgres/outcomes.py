"""How tasks end or go back to the queue on PostgreSQL: finish, reschedule,
cancel, retry, purge.

Each function runs one statement on the connection it is given, inside the
caller's write transaction, and returns what changed; the store turns that
into its finished counts and its ``NOTIFY``. A write about a running task
that carries a fencing token applies only while the task still holds it
(see ``leases``), and clears the lease.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import psycopg

from executor.store.columns import to_json
from executor.store.postgres.rows import COLUMNS, COLUMNS_NO_PAYLOAD, qualified, record
from executor.store.records import Outcome, TaskRecord

PURGE_CHUNK = 5000

_FINISH = f"""
UPDATE offload_tasks AS t SET status = v.status, finished_at = v.finished_at,
    started_at = coalesce(v.started_at, t.started_at), result = v.result,
    error = v.error::jsonb, progress = v.progress::jsonb, lease_owner = NULL,
    lease_expires_at = NULL
FROM unnest(%s::text[], %s::text[], %s::float8[], %s::float8[], %s::bytea[], %s::text[],
            %s::text[], %s::bigint[])
    AS v(id, status, finished_at, started_at, result, error, progress, token)
WHERE t.id = v.id AND t.status = 'running' AND (v.token IS NULL OR t.lease_token = v.token)
RETURNING {qualified("t", COLUMNS_NO_PAYLOAD)}
"""


def finish(conn: psycopg.Connection, outcomes: Sequence[Outcome]) -> list[TaskRecord]:
    """Record how running tasks ended (statuses already checked by the
    store), in one statement. Skipped: ids not running, a repeated id (the
    first outcome wins), an outcome whose ``token`` is no longer the task's.
    Returns the changed records, without payload."""
    by_id = list({o.id: o for o in reversed(outcomes)}.values())
    rows = conn.execute(_FINISH, (
        [o.id for o in by_id], [o.status for o in by_id],
        [o.finished_at for o in by_id], [o.started_at for o in by_id],
        [o.result for o in by_id], [to_json(o.error) for o in by_id],
        [to_json(o.progress) for o in by_id], [o.token for o in by_id])).fetchall()
    return [record(row) for row in rows]


def reschedule(conn: psycopg.Connection, task_id: str, not_before: float,
               error: dict[str, Any] | None, count_attempt: bool, token: int | None
               ) -> TaskRecord | None:
    """Put a running task back, due at ``not_before``: ``retrying`` with the
    attempt kept and ``error`` stored, or (``count_attempt`` False)
    ``pending`` with the claim's attempt undone. ``None`` if it is missing,
    not running, or ``token`` is stale."""
    status, undo = ("retrying", 0) if count_attempt else ("pending", 1)
    row = conn.execute(
        "UPDATE offload_tasks SET status = %s, attempts = greatest(attempts - %s, 0),"
        " not_before = %s, error = coalesce(%s::jsonb, error), lease_owner = NULL,"
        " lease_expires_at = NULL WHERE id = %s AND status = 'running'"
        f" AND (%s::bigint IS NULL OR lease_token = %s) RETURNING {COLUMNS}",
        (status, undo, not_before, to_json(error), task_id, token, token)).fetchone()
    return None if row is None else record(row)


def cancel(conn: psycopg.Connection, task_id: str, by: str, now: float, force: bool,
           token: int | None) -> TaskRecord | None:
    """Cancel the task if it is pending or retrying, or running, ``force``
    and (if given) still holding ``token``. Returns its record if this call
    cancelled it, else ``None``."""
    row = conn.execute(
        "UPDATE offload_tasks SET status = 'cancelled', cancelled_by = %s,"
        " finished_at = %s, lease_owner = NULL, lease_expires_at = NULL WHERE id = %s"
        " AND (status IN ('pending', 'retrying') OR (status = 'running' AND %s"
        " AND (%s::bigint IS NULL OR lease_token = %s)))"
        f" RETURNING {COLUMNS}", (by, now, task_id, force, token, token)).fetchone()
    return None if row is None else record(row)


def retry(conn: psycopg.Connection, task_ids: Sequence[str], now: float
          ) -> tuple[list[TaskRecord], Counter[str]]:
    """Put the failed or cancelled tasks among ``task_ids`` back to
    ``pending`` as the same tasks (attempts 0, due at ``now``, outcome and
    lease cleared); other ids are skipped, a repeated one counts once.
    Returns the changed records, without payload, and how many left each
    finished status."""
    ids = list(dict.fromkeys(task_ids))
    rows = conn.execute(
        "WITH old AS (SELECT seqno, status FROM offload_tasks WHERE id = ANY(%s)"
        " AND status IN ('failed', 'cancelled') FOR UPDATE)"
        " UPDATE offload_tasks AS t SET status = 'pending', attempts = 0,"
        " not_before = %s, started_at = NULL, finished_at = NULL, result = NULL,"
        " error = NULL, progress = NULL, cancelled_by = NULL, lease_owner = NULL,"
        " lease_expires_at = NULL FROM old WHERE t.seqno = old.seqno"
        f" RETURNING old.status, {qualified('t', COLUMNS_NO_PAYLOAD)}",
        (ids, now)).fetchall()
    return [record(row[1:]) for row in rows], Counter(row[0] for row in rows)


def purge(conn: psycopg.Connection, older_than: float) -> list[str]:
    """Delete up to ``PURGE_CHUNK`` finished tasks with ``finished_at <
    older_than`` (rows another pool is purging are skipped); returns the
    status of each one deleted."""
    gone = conn.execute(
        "DELETE FROM offload_tasks WHERE seqno IN (SELECT seqno FROM offload_tasks"
        " WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < %s"
        " LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING status",
        (older_than, PURGE_CHUNK)).fetchall()
    return [status for (status,) in gone]
