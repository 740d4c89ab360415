"""Inserting submitted tasks into PostgreSQL, some of them already claimed.

One ``INSERT ... SELECT FROM unnest(...)`` per batch, ``ON CONFLICT DO
NOTHING`` on the idempotency key: when two pools receive the same key at
the same moment, the second insert waits for the first's transaction and
then finds its row, so both answer with the one task.

``seqno`` (claim order within a priority) is submission order: drawn from
its sequence in input order. The rows themselves are inserted in key order,
so that every insert takes its keys' index entries in one global order: two
pools inserting overlapping keys in opposite orders used to each wait on a
key the other had just inserted, a deadlock PostgreSQL broke by failing one
turn. (Advisory locks per key did the same but took one slot each of the
server's shared lock table: a turn of some 15,000 keyed tasks failed with
"out of shared memory".)
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from executor.store.columns import new_ids
from executor.store.postgres import reads
from executor.store.postgres.leases import DB_NOW, new_token
from executor.store.records import NewTask, TaskRecord

# PostgreSQL evaluates volatile output expressions (nextval) after ORDER BY
# (since 9.6), so the CTE draws seqno in input order; the INSERT then takes
# its rows in key order (keyless rows last).
_INSERT = f"""
WITH v AS MATERIALIZED (
    SELECT u.*, nextval(pg_get_serial_sequence('offload_tasks', 'seqno')) AS seqno
    FROM unnest(%(id)s::text[], %(kind)s::text[], %(max_retries)s::bigint[],
        %(timeout_s)s::float8[], %(priority)s::int[], %(not_before)s::float8[],
        %(payload)s::bytea[], %(group_id)s::text[], %(seq)s::bigint[], %(key)s::text[],
        %(ref)s::text[], %(run)s::bool[], %(token)s::bigint[])
        WITH ORDINALITY AS u(id, kind, max_retries, timeout_s, priority, not_before, payload,
                             group_id, seq, key, ref, run, token, ord)
    ORDER BY u.ord)
INSERT INTO offload_tasks (seqno, id, kind, status, attempts, max_retries, timeout_s,
    priority, not_before, created_at, payload, group_id, seq, idempotency_key, ref,
    lease_owner, lease_expires_at, lease_token)
OVERRIDING SYSTEM VALUE
SELECT v.seqno, v.id, v.kind, CASE WHEN v.run THEN 'running' ELSE 'pending' END,
    CASE WHEN v.run THEN 1 ELSE 0 END, v.max_retries, v.timeout_s, v.priority, v.not_before,
    %(now)s, v.payload, v.group_id, v.seq, v.key, v.ref,
    CASE WHEN v.run THEN %(owner)s END,
    CASE WHEN v.run THEN {DB_NOW} + %(lease_s)s END,
    coalesce(v.token, 0)
FROM v
ORDER BY v.key NULLS LAST, v.ord
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, lease_expires_at
"""


def insert(conn: psycopg.Connection, tasks: Sequence[NewTask], now: float, n: int, owner: str,
           lease_s: float) -> tuple[list[TaskRecord], list[TaskRecord], bool]:
    """Insert ``tasks`` (in the caller's transaction), up to ``n`` of them
    already running under ``owner``'s lease (``pick``). Returns the records in
    input order (an existing one for a known idempotency key, the claimed ones
    as ``pending``), the claimed records, and whether any inserted task waits
    (for the caller to notify other pools)."""
    first: dict[str, int] = {}  # idempotency key -> position of its first task
    fresh = [i for i, t in enumerate(tasks) if t.idempotency_key is None
             or first.setdefault(t.idempotency_key, i) == i]
    ids = new_ids(now, len(fresh))
    records: dict[int, TaskRecord] = {}
    for i, task_id in zip(fresh, ids, strict=True):
        t = tasks[i]
        records[i] = TaskRecord(
            id=task_id, kind=t.kind, status="pending", attempts=0,
            max_retries=t.max_retries, timeout_s=t.timeout_s, priority=t.priority,
            not_before=t.not_before or now, created_at=now, payload=t.payload,
            group_id=t.group_id, seq=t.seq, idempotency_key=t.idempotency_key, ref=t.ref)
    new = [records[i] for i in fresh]
    run = {r.id: new_token() for r in pick(conn, new, now, n)} if n > 0 else {}
    rows = conn.execute(_INSERT, {
        "now": now, "owner": owner, "lease_s": lease_s,
        "id": [r.id for r in new], "kind": [r.kind for r in new],
        "max_retries": [r.max_retries for r in new],
        "timeout_s": [r.timeout_s for r in new], "priority": [r.priority for r in new],
        "not_before": [r.not_before for r in new], "payload": [r.payload for r in new],
        "group_id": [r.group_id for r in new], "seq": [r.seq for r in new],
        "key": [r.idempotency_key for r in new], "ref": [r.ref for r in new],
        "run": [r.id in run for r in new], "token": [run.get(r.id) for r in new]}).fetchall()
    inserted: dict[str, float | None] = dict(rows)
    taken = [r.idempotency_key for r in new if r.id not in inserted]
    existing = {rec.idempotency_key: rec for rec in reads.select(
        conn, "idempotency_key = ANY(%s)", (taken,))} if taken else {}
    waiting = any(r.id in inserted and r.id not in run for r in new)
    out: list[TaskRecord] = []
    for i, t in enumerate(tasks):
        key = t.idempotency_key
        rec = records.get(i) if key is None else records.get(first[key])
        if rec is None or rec.id not in inserted:
            rec = existing[key]
        out.append(rec)
    claimed = [TaskRecord(
        id=r.id, kind=r.kind, status="running", attempts=1, max_retries=r.max_retries,
        timeout_s=r.timeout_s, priority=r.priority, not_before=r.not_before,
        created_at=r.created_at, payload=r.payload, group_id=r.group_id, seq=r.seq,
        idempotency_key=r.idempotency_key, ref=r.ref, lease_owner=owner,
        lease_expires_at=inserted[r.id], lease_token=run[r.id])
        for r in sorted((records[i] for i in fresh if records[i].id in run
                         and records[i].id in inserted), key=lambda r: -r.priority)]
    return out, claimed, waiting



def pick(conn: psycopg.Connection, new: list[TaskRecord], now: float, n: int
          ) -> list[TaskRecord]:
    """Up to ``n`` of ``new`` that ``claim`` could take now, in claim order:
    due, the lowest seq of their group among ``new``, and (unless seq 0,
    before which nothing can be) no unfinished earlier member stored."""
    first_seq: dict[str, int] = {}
    for r in new:
        if r.group_id is not None and r.seq < first_seq.get(r.group_id, r.seq + 1):
            first_seq[r.group_id] = r.seq
    probe = [(g, s) for g, s in first_seq.items() if s > 0]
    blocked: set[str] = set()
    if probe:
        blocked = {row[0] for row in conn.execute(
            "SELECT v.g FROM unnest(%s::text[], %s::bigint[]) AS v(g, s) WHERE EXISTS ("
            " SELECT 1 FROM offload_tasks AS t WHERE t.group_id = v.g AND t.seq < v.s"
            " AND t.status IN ('pending', 'running', 'retrying'))",
            ([g for g, _ in probe], [s for _, s in probe]))}
    due = [r for r in new if r.not_before <= now and (r.group_id is None or (
        r.seq == first_seq[r.group_id] and r.group_id not in blocked))]
    due.sort(key=lambda r: -r.priority)  # stable: input order within a priority
    return due[:n]
