"""Claims and leases on PostgreSQL: claim, started, renew, recover.

Leases are judged by the database's clock (``now()``), never a host's: a
lease expires at the server's ``now() + lease_s``, renewals extend from the
server's ``now()``, and a sweep takes back only leases that expired by the
server's clock. The ``now`` callers pass is a host's clock and decides only
what is due (``not_before``) and the timestamps shown to users.

Every claim gives the task a fresh random ``lease_token`` (52 bits): the
fencing token. Random, not a counter: should a claim's commit ever be lost
(a server whose fsync lies, a failover to a replica that had not received
it), a counter would hand the same token to the next claim. A write
about a running task (started, renew, finish, reschedule, forced cancel)
that carries a token applies only while the task still holds that token,
so a pool paused past its lease cannot touch the run that replaced it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import psycopg

from executor.store.postgres.rows import qualified, record
from executor.store.records import TaskRecord

DB_NOW = "extract(epoch FROM now())::float8"
TOKEN_BITS = 52  # what random() (a double) carries
_RANDOM_TOKEN = f"(floor(random() * {2 ** TOKEN_BITS - 1}) + 1)::bigint"
_U_COLUMNS = qualified("u")

# Due, not behind an unfinished earlier member of its group, by priority then
# submission order; rows another claimer is taking right now are skipped.
CLAIM = f"""
WITH picked AS (
    SELECT t.seqno FROM offload_tasks AS t
    WHERE t.status IN ('pending', 'retrying') AND t.not_before <= %(now)s
      AND (t.group_id IS NULL OR NOT EXISTS (
          SELECT 1 FROM offload_tasks AS g
          WHERE g.group_id = t.group_id AND g.seq < t.seq
            AND g.status IN ('pending', 'running', 'retrying')))
    ORDER BY t.priority DESC, t.seqno
    LIMIT %(n)s
    FOR UPDATE OF t SKIP LOCKED)
UPDATE offload_tasks AS u SET status = 'running', attempts = u.attempts + 1,
    started_at = NULL, lease_owner = %(owner)s, lease_expires_at = {DB_NOW} + %(lease_s)s,
    lease_token = {_RANDOM_TOKEN}
FROM picked WHERE u.seqno = picked.seqno
RETURNING {_U_COLUMNS}, u.seqno
"""

_STARTED = """
UPDATE offload_tasks AS t SET started_at = v.at
FROM unnest(%s::text[], %s::float8[], %s::bigint[]) AS v(id, at, token)
WHERE t.id = v.id AND t.status = 'running' AND (v.token IS NULL OR t.lease_token = v.token)
RETURNING t.id
"""

_RENEW = f"""
UPDATE offload_tasks AS t SET lease_expires_at = {DB_NOW} + %(lease_s)s
FROM unnest(%(ids)s::text[], %(tokens)s::bigint[]) AS v(id, token)
WHERE t.id = v.id AND t.status = 'running' AND t.lease_owner = %(owner)s
  AND (v.token IS NULL OR t.lease_token = v.token)
RETURNING t.id
"""

_OUT = "(started_at IS NOT NULL AND attempts > max_retries)"  # ran, and no attempt left
_RECOVER = f"""
WITH gone AS (
    SELECT seqno FROM offload_tasks WHERE status = 'running' AND {{which}}
    FOR UPDATE SKIP LOCKED)
UPDATE offload_tasks AS u SET
    status = CASE WHEN {_OUT} THEN 'failed' ELSE 'pending' END,
    attempts = CASE WHEN started_at IS NULL THEN greatest(attempts - 1, 0) ELSE attempts END,
    finished_at = CASE WHEN {_OUT} THEN %(now)s ELSE finished_at END,
    error = CASE WHEN {_OUT} THEN jsonb_build_object(
        'reason', 'lost', 'traceback', '', 'message',
        'the task was running when its pool (' || coalesce(lease_owner, '?') ||
        ') stopped renewing its lease, and it has no attempts left') ELSE error END,
    lease_owner = NULL, lease_expires_at = NULL
FROM gone WHERE u.seqno = gone.seqno
RETURNING {_U_COLUMNS}
"""
_EXPIRED = f"lease_expires_at <= {DB_NOW}"
_OF_OWNER = "lease_owner = %(owner)s"


def new_token() -> int:
    """A fresh fencing token, as a claim in SQL draws one (never 0: unclaimed)."""
    return secrets.randbelow(2 ** TOKEN_BITS - 1) + 1


def claim(conn: psycopg.Connection, n: int, now: float, owner: str, lease_s: float
          ) -> list[TaskRecord]:
    """Claim up to ``n`` due tasks for ``owner`` (see ``CLAIM``), in claim order."""
    rows = conn.execute(CLAIM, {"now": now, "n": n, "owner": owner,
                                "lease_s": lease_s}).fetchall()
    rows.sort(key=lambda row: (-row[6], row[-1]))  # RETURNING has no order
    return [record(row) for row in rows]


def started(conn: psycopg.Connection,
            starts: Sequence[tuple[str, float, int | None]]) -> list[str]:
    """Set ``started_at`` of running tasks (fenced by token when given);
    returns the ids changed."""
    ids = [task_id for task_id, _, _ in starts]
    ats = [at for _, at, _ in starts]
    tokens = [token for _, _, token in starts]
    return [row[0] for row in conn.execute(_STARTED, (ids, ats, tokens))]


def renew(conn: psycopg.Connection, leases: Sequence[tuple[str, int | None]], owner: str,
          lease_s: float) -> list[str]:
    """Extend to the server's ``now() + lease_s`` the leases ``owner`` still
    holds with those tokens, in one statement; returns the ids renewed."""
    ids = [task_id for task_id, _ in leases]
    tokens = [token for _, token in leases]
    return [row[0] for row in conn.execute(_RENEW, {"ids": ids, "tokens": tokens,
                                                    "owner": owner, "lease_s": lease_s})]


def recover(conn: psycopg.Connection, now: float, owner: str | None) -> list[TaskRecord]:
    """Take back running tasks: all of ``owner``'s, or (``owner`` None) those
    whose lease expired by the server's clock. Rows another transaction is
    writing right now are skipped (the next sweep sees them)."""
    which = _OF_OWNER if owner is not None else _EXPIRED
    rows = conn.execute(_RECOVER.format(which=which),
                        {"now": now, "owner": owner}).fetchall()
    return [record(row) for row in rows]
