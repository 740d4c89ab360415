"""Claims and leases on SQLite: claim, started, renew, recover.

The pool is the file's only writer (the single-writer lock, ``connection``),
so leases are judged by the caller's clock (``now``) and fencing tokens
are never checked: no other pool can hold a stale claim here. The pool
takes every running task back when it starts (``recover`` with
``everything``); by owner or by expired lease is the Store contract's too.

Each function runs its statements on the connection it is given, inside
the caller's write transaction, and returns what changed; the store keeps
the finished counts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from executor.store.records import TaskRecord
from executor.store.sqlite.schema import COLUMNS, WAITING, any_of, record

# Due, not behind an unfinished earlier member of its group, by priority then
# submission order, walking the ``tasks_waiting`` index.
CLAIM = f"""
UPDATE tasks SET status = 'running', attempts = attempts + 1, started_at = NULL,
    lease_owner = :owner, lease_expires_at = :expires
WHERE seqno IN (
    SELECT t.seqno FROM tasks AS t INDEXED BY tasks_waiting
    WHERE t.{WAITING} AND t.not_before <= :now
      AND (t.group_id IS NULL OR NOT EXISTS (
          SELECT 1 FROM tasks AS g INDEXED BY tasks_group
          WHERE g.group_id = t.group_id AND g.seq < t.seq
            AND {any_of("g.status", "pending", "running", "retrying")}))
    ORDER BY t.priority DESC, t.seqno
    LIMIT :n)
RETURNING {COLUMNS}, seqno
"""
LOST = """json_object('reason', 'lost', 'traceback', '', 'message',
    'the task was running when its pool (' || coalesce(lease_owner, '?') ||
    ') stopped, and it has no attempts left')"""


def claim(db: sqlite3.Connection, n: int, now: float, owner: str, lease_s: float
          ) -> list[TaskRecord]:
    """Claim up to ``n`` due tasks for ``owner`` until ``now + lease_s`` (see
    ``CLAIM``); returns their records in claim order."""
    rows = db.execute(CLAIM, {"now": now, "owner": owner,
                               "expires": now + lease_s, "n": n}).fetchall()
    # RETURNING has no defined order: restore priority, then submission order.
    rows.sort(key=lambda row: (-row[6], row[-1]))
    return [record(row) for row in rows]


def started(db: sqlite3.Connection, starts: Sequence[tuple[str, float, int | None]]
            ) -> list[str]:
    """Set ``started_at`` of the running tasks among ``(id, time, token)``
    (token unchecked); returns the ids set."""
    done: list[str] = []
    for task_id, at, _ in starts:
        if db.execute("UPDATE tasks SET started_at = ? WHERE id = ?"
                      " AND status = 'running' RETURNING 1",
                      (at, task_id)).fetchone() is not None:
            done.append(task_id)
    return done


def renew(db: sqlite3.Connection, leases: Sequence[tuple[str, int | None]], owner: str,
          now: float, lease_s: float) -> list[str]:
    """Extend to ``now + lease_s`` the leases of the ``(id, token)`` tasks
    running under ``owner`` (token unchecked); returns the ids renewed."""
    done: list[str] = []
    for task_id, _ in leases:
        if db.execute("UPDATE tasks SET lease_expires_at = ? WHERE id = ?"
                      " AND status = 'running' AND lease_owner = ? RETURNING 1",
                      (now + lease_s, task_id, owner)).fetchone() is not None:
            done.append(task_id)
    return done


def recover(db: sqlite3.Connection, now: float, owner: str | None, everything: bool
            ) -> list[TaskRecord]:
    """Take back running tasks: every one if ``everything``, else all of
    ``owner``'s, else (``owner`` None) those whose lease expired by ``now``.
    Returns the changed records: first the never-started ones (``pending``,
    attempt undone), then those out of attempts (``failed``, reason
    ``lost``, finished at ``now``), then the rest (``pending``, attempt kept)."""
    which, param = (("lease_owner = ?", owner) if owner is not None
                    else ("lease_expires_at <= ?", now))
    if everything:  # at the start of the only writer: nobody else holds a lease
        which, param = ("? IS NOT NULL", 1)
    where = f"status = 'running' AND {which}"
    rows = db.execute(
        "UPDATE tasks SET status = 'pending', attempts = max(attempts - 1, 0),"
        " lease_owner = NULL, lease_expires_at = NULL"
        f" WHERE {where} AND started_at IS NULL RETURNING {COLUMNS}",
        (param,)).fetchall()
    rows += db.execute(
        f"UPDATE tasks SET status = 'failed', finished_at = ?, error = {LOST},"
        " lease_owner = NULL, lease_expires_at = NULL"
        f" WHERE {where} AND attempts >= max_retries + 1 RETURNING {COLUMNS}",
        (now, param)).fetchall()
    rows += db.execute(
        "UPDATE tasks SET status = 'pending', lease_owner = NULL,"
        f" lease_expires_at = NULL WHERE {where} RETURNING {COLUMNS}",
        (param,)).fetchall()
    return [record(row) for row in rows]
