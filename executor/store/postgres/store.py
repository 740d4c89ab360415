"""The PostgreSQL store: several pools (one per host) share one database.

Every write method runs one transaction (a savepoint inside ``batch()``),
committed with ``synchronous_commit = on`` (PostgreSQL's default, whatever
the server or role says): the WAL is flushed when COMMIT returns, so
everything is durable on return and ``sync()`` has nothing left to do.

Not done, on purpose: committing the pool's turns asynchronously and
flushing from ``sync()`` on a second connection. A server that crashes and
restarts between the two lets that second connection (reconnected to the
new server) flush nothing of the lost turn and still succeed, so a ``202``
would be sent for a task that is gone (the crash test caught exactly that).
It needs the commit's WAL position and the server's start time checked in
``sync()``; until then the loop waits for each turn's flush.

Claims, leases and fencing are in ``leases``; the schema in ``schema``.
A write that makes work due (new tasks, a retry, a recovered task, the end
of a group member) also sends ``NOTIFY offload_tasks`` with the store's id,
delivered to listening pools when the transaction commits.

Methods block the calling thread for their round trips. Not thread-safe
(but ``sync`` may be called from any thread).
"""

from __future__ import annotations

import builtins
import secrets
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from executor.store.base import NewTask, Outcome, ScheduleSlot, StoreError, TaskRecord
from executor.store.columns import to_json
from executor.store.postgres import inserts, leases, reads
from executor.store.postgres.connection import Session
from executor.store.postgres.listen import Listener
from executor.store.postgres.rows import (
    COLUMNS,
    COLUMNS_NO_PAYLOAD,
    qualified,
    record,
)
from executor.store.postgres.schema import SLOT_TASK, TAKE_SLOT, migrate

CHANNEL = "offload_tasks"
SHARDS = 64  # rows per status in offload_counts
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


class PostgresStore:
    """A Store on the PostgreSQL database at ``url`` (any libpq URI; the
    password may come from PGPASSWORD or a password file, as libpq allows).

    Opening connects and creates or migrates the schema (see ``schema``).
    Raises StoreError, naming the database but never the password, if it
    cannot. Shared: any number of pools may open the same database.
    """

    shared = True  # several pools write this store: no recover(everything=True)

    def __init__(self, url: str) -> None:
        # Durable COMMITs whatever the server's or role's default (see above).
        self._s = Session(url, setup="SET synchronous_commit = on")
        self.where = self._s.where
        self.id = secrets.token_hex(8)  # NOTIFY payload: listeners skip their own
        self._shard = secrets.randbelow(SHARDS)
        self._delta: Counter[str] = Counter()  # finished per status, this transaction
        conn = self._s.connect()
        try:
            migrate(conn, self.where)
        except psycopg.Error as exc:
            self.close()
            raise self._s.error(exc, "cannot create or migrate the schema") from None
        except StoreError:
            self.close()
            raise

    # -- transactions ------------------------------------------------------------

    def _flush_counts(self, conn: psycopg.Connection) -> None:
        delta = sorted((s, n) for s, n in self._delta.items() if n)  # one lock order
        self._delta.clear()
        if delta:
            conn.execute(
                "INSERT INTO offload_counts (shard, status, n) SELECT %s, s, d"
                " FROM unnest(%s::text[], %s::bigint[]) AS v(s, d)"
                " ON CONFLICT (shard, status) DO UPDATE SET n = offload_counts.n + excluded.n",
                (self._shard, [s for s, _ in delta], [n for _, n in delta]))

    @contextmanager
    def _write(self, *, power_safe: bool = False) -> Iterator[psycopg.Connection]:
        if power_safe and self._s.in_batch:
            raise StoreError(f"PostgreSQL store {self.where}: a power-safe write inside "
                             "batch(); write with sync=False and sync() after the batch")
        saved = self._delta.copy()

        def undo() -> None:
            # In place: the enclosing batch's rollback clears this same Counter.
            self._delta.clear()
            if self._s.in_batch:
                self._delta.update(saved)

        with self._s.write(self._flush_counts, undo) as conn:
            yield conn

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run the write calls made inside as one transaction, committed (and
        durable) on exit; an exception leaving the block rolls it all back.
        Each call inside is a savepoint: one that raises StoreError leaves no
        trace and the batch may go on; a lost connection raises BatchLost.
        ``enqueue(sync=True)`` and ``cancel`` raise StoreError inside."""
        if self._s.in_batch:
            yield
            return
        with self._s.write(self._flush_counts, self._delta.clear):
            self._s.in_batch = True
            try:
                yield
            finally:
                self._s.in_batch = False

    def _notify(self, conn: psycopg.Connection) -> None:
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.id))

    # -- writes --------------------------------------------------------------------

    def enqueue(self, tasks: Sequence[NewTask], now: float, *, sync: bool = True
                ) -> list[TaskRecord]:
        """Insert ``tasks`` in one transaction, all or nothing; durable on return
        (``sync`` changes nothing here: every commit is durable). A known
        ``idempotency_key`` (stored, committed by another pool meanwhile, or
        earlier in this batch) returns the existing record. Input order."""
        return self._insert(tasks, now, 0, "", 0.0, power_safe=sync)[0]

    def enqueue_and_claim(self, tasks: Sequence[NewTask], now: float, n: int, owner: str,
                          lease_s: float) -> tuple[list[TaskRecord], list[TaskRecord]]:
        """``enqueue(tasks, now, sync=False)``, inserting up to ``n`` of the new
        tasks already claimed by ``owner`` (see the Store protocol)."""
        return self._insert(tasks, now, n, owner, lease_s, power_safe=False)

    def _insert(self, tasks: Sequence[NewTask], now: float, n: int, owner: str,
                lease_s: float, *, power_safe: bool
                ) -> tuple[list[TaskRecord], list[TaskRecord]]:
        if not tasks:
            return [], []
        with self._write(power_safe=power_safe) as conn:
            out, claimed, waiting = inserts.insert(conn, tasks, now, n, owner, lease_s)
            if waiting:
                self._notify(conn)
        return out, claimed

    def claim(self, n: int, now: float, owner: str, lease_s: float) -> list[TaskRecord]:
        """Move up to ``n`` due tasks to ``running`` under ``owner``'s lease, until
        the server's ``now() + lease_s``, each with a fresh ``lease_token``.
        Tasks other pools are claiming at the same moment are skipped, never
        waited for or taken twice. Durable on return."""
        if n <= 0:
            return []
        with self._write() as conn:
            return leases.claim(conn, n, now, owner, lease_s)

    def started(self, starts: Sequence[tuple[str, float, int | None]]
                ) -> builtins.list[str]:
        """Record ``(id, started_at, token)`` of running tasks that really
        started (``token`` None: unfenced); a stale token or a task not
        running is skipped. Returns the ids recorded. Durable on return (or
        with the batch)."""
        if not starts:
            return []
        with self._write() as conn:
            return leases.started(conn, starts)

    def renew(self, leases_: Sequence[tuple[str, int | None]], owner: str, now: float,
              lease_s: float) -> builtins.list[str]:
        """Extend, in one statement, the leases ``owner`` still holds on
        ``(id, token)`` to the server's ``now() + lease_s`` (``now`` is unused:
        the database's clock judges leases). Returns the ids renewed; any
        other was taken back (swept, cancelled) and may run elsewhere."""
        if not leases_:
            return []
        with self._write() as conn:
            return leases.renew(conn, leases_, owner, lease_s)

    def finish(self, outcomes: Sequence[Outcome]) -> builtins.list[TaskRecord]:
        """Record how running tasks ended, in one statement; durable on return.
        Skipped: ids not running, a repeated id (the first outcome wins), and
        an outcome whose ``token`` is no longer the task's. Returns the
        changed records, without payload."""
        for o in outcomes:
            if o.status not in ("succeeded", "failed"):
                raise StoreError(f"task {o.id}: finish takes 'succeeded' or 'failed', "
                                 f"not {o.status!r}")
        by_id = list({o.id: o for o in reversed(outcomes)}.values())
        if not by_id:
            return []
        with self._write() as conn:
            rows = conn.execute(_FINISH, (
                [o.id for o in by_id], [o.status for o in by_id],
                [o.finished_at for o in by_id], [o.started_at for o in by_id],
                [o.result for o in by_id], [to_json(o.error) for o in by_id],
                [to_json(o.progress) for o in by_id], [o.token for o in by_id])).fetchall()
            done = [record(row) for row in rows]
            self._delta.update(r.status for r in done)
            if any(r.group_id is not None for r in done):
                self._notify(conn)  # the next call of the group may be due
        return done

    def reschedule(self, task_id: str, not_before: float, *, error: dict[str, Any] | None,
                   count_attempt: bool, token: int | None = None) -> TaskRecord | None:
        """Put a running task back, due at ``not_before``, lease cleared:
        ``retrying`` with the attempt kept and ``error`` stored, or (with
        ``count_attempt=False``) ``pending`` with the claim's attempt undone.
        ``None`` if missing, not running, or ``token`` is stale. Durable."""
        status, undo = ("retrying", 0) if count_attempt else ("pending", 1)
        with self._write() as conn:
            row = conn.execute(
                "UPDATE offload_tasks SET status = %s, attempts = greatest(attempts - %s, 0),"
                " not_before = %s, error = coalesce(%s::jsonb, error), lease_owner = NULL,"
                " lease_expires_at = NULL WHERE id = %s AND status = 'running'"
                f" AND (%s::bigint IS NULL OR lease_token = %s) RETURNING {COLUMNS}",
                (status, undo, not_before, to_json(error), task_id, token, token)).fetchone()
            if row is not None:
                self._notify(conn)
        return None if row is None else record(row)

    def cancel(self, task_id: str, by: str, now: float, *, force: bool = False,
               token: int | None = None) -> TaskRecord | None:
        """Cancel a pending or retrying task, or with ``force`` a running one
        (only while it holds ``token``, if given: the claim the caller saw).
        Returns the record after the call, or ``None`` if missing. The pool
        running a task cancelled elsewhere learns it when its renewal fails.
        Durable on return; refused inside a batch."""
        with self._write(power_safe=True) as conn:
            row = conn.execute(
                "UPDATE offload_tasks SET status = 'cancelled', cancelled_by = %s,"
                " finished_at = %s, lease_owner = NULL, lease_expires_at = NULL WHERE id = %s"
                " AND (status IN ('pending', 'retrying') OR (status = 'running' AND %s"
                " AND (%s::bigint IS NULL OR lease_token = %s)))"
                f" RETURNING {COLUMNS}", (by, now, task_id, force, token, token)).fetchone()
            if row is not None:
                self._delta["cancelled"] += 1
                if row[10] is not None:  # group_id: its next call may be due
                    self._notify(conn)
            else:
                found = reads.select(conn, "id = %s", (task_id,))
        return record(row) if row is not None else (found[0] if found else None)

    def retry(self, task_ids: Sequence[str], now: float) -> builtins.list[TaskRecord]:
        """Put failed or cancelled tasks back to ``pending`` as the same tasks
        (attempts 0, due at ``now``, outcome and lease cleared); other ids are
        skipped. Durable on return; refused inside a batch. Returns the
        changed records, without payload (see ``Store.retry``)."""
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return []
        with self._write(power_safe=True) as conn:
            rows = conn.execute(
                "WITH old AS (SELECT seqno, status FROM offload_tasks WHERE id = ANY(%s)"
                " AND status IN ('failed', 'cancelled') FOR UPDATE)"
                " UPDATE offload_tasks AS t SET status = 'pending', attempts = 0,"
                " not_before = %s, started_at = NULL, finished_at = NULL, result = NULL,"
                " error = NULL, progress = NULL, cancelled_by = NULL, lease_owner = NULL,"
                " lease_expires_at = NULL FROM old WHERE t.seqno = old.seqno"
                f" RETURNING old.status, {qualified('t', COLUMNS_NO_PAYLOAD)}",
                (ids, now)).fetchall()
            self._delta.subtract(row[0] for row in rows)  # no longer finished
            if rows:
                self._notify(conn)
        return [record(row[1:]) for row in rows]

    def recover(self, now: float, owner: str | None = None, *, everything: bool = False
                ) -> builtins.list[TaskRecord]:
        """Take back running tasks: all of ``owner``'s if given, else those
        whose lease expired by the server's clock (``now`` only stamps
        ``finished_at`` of a task failed as lost). Never-started ones get
        their attempt back; one out of attempts ends ``failed: lost``. Two
        pools recovering at once change each task once. ``everything`` is
        refused: other pools hold leases here. Returns the changed records."""
        if everything:
            raise StoreError(f"PostgreSQL store {self.where} is shared by several pools: "
                             "recover(everything=True) would take their running tasks")
        with self._write() as conn:
            changed = leases.recover(conn, now, owner)
            self._delta["failed"] += sum(r.status == "failed" for r in changed)
            if any(r.status == "pending" for r in changed):
                self._notify(conn)
        return changed

    def purge(self, older_than: float) -> int:
        """Delete finished tasks with ``finished_at < older_than``, in chunks
        (rows another pool is purging are skipped); return how many."""
        total = 0
        while True:
            with self._write() as conn:
                gone = conn.execute(
                    "DELETE FROM offload_tasks WHERE seqno IN (SELECT seqno FROM offload_tasks"
                    " WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < %s"
                    " LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING status",
                    (older_than, PURGE_CHUNK)).fetchall()
                self._delta.subtract(status for (status,) in gone)
            total += len(gone)
            if len(gone) < PURGE_CHUNK or self._s.in_batch:
                return total

    # -- reads ----------------------------------------------------------------------

    def failed_ids(self, *, kind: str | None = None, finished_after: float | None = None,
                   finished_before: float | None = None, limit: int = 100
                   ) -> builtins.list[str]:
        """Up to ``limit`` failed tasks' ids matching, oldest failure first."""
        with self._s.read() as conn:
            return reads.failed_ids(conn, kind, finished_after, finished_before, limit)

    def get(self, task_id: str) -> TaskRecord | None:
        """The task's record, or ``None`` if missing."""
        with self._s.read() as conn:
            found = reads.select(conn, "id = %s", (task_id,))
        return found[0] if found else None

    def list(self, *, status: str | None = None, kind: str | None = None, limit: int = 50,
             cursor: str | None = None) -> tuple[builtins.list[TaskRecord], str | None]:
        """A page of records, newest first, without payload (see ``reads.page``)."""
        with self._s.read() as conn:
            return reads.page(conn, status, kind, limit, cursor)

    def counts(self) -> dict[str, int]:
        """Tasks per status in the whole shared queue, zeros included."""
        with self._s.read() as conn:
            return reads.counts(conn)

    def next_due(self) -> float | None:
        """Earliest ``not_before`` among pending/retrying tasks, or ``None``."""
        with self._s.read() as conn:
            return reads.next_due(conn)

    def take_slot(self, schedule: str, slot: float, now: float) -> bool:
        """Record ``slot`` as ``schedule``'s last slot if later than the stored
        one (or none is); True if this call did (see the Store protocol)."""
        with self._write() as conn:
            return conn.execute(TAKE_SLOT, (schedule, slot, now)).fetchone() is not None

    def slot_task(self, schedule: str, slot: float, task_id: str) -> None:
        """Record ``task_id`` as the run of ``schedule``'s ``slot``, if still its last."""
        with self._write() as conn:
            conn.execute(SLOT_TASK, (task_id, slot, schedule, slot))

    def schedule_slots(self) -> dict[str, ScheduleSlot]:
        """Every schedule's row, by name."""
        with self._s.read() as conn:
            rows = conn.execute("SELECT schedule, slot, taken_at, task_id, task_slot"
                                " FROM offload_schedule_slots").fetchall()
        return {row[0]: ScheduleSlot(*row) for row in rows}

    def open_listener(self) -> Listener:
        """A new LISTEN connection that hears of work other stores made due
        (see ``listen``). Raises StoreError if it cannot connect."""
        return Listener(self._s.url, CHANNEL, self.id)

    def sync(self) -> None:
        """Nothing to do: every commit was durable when it returned."""

    def close(self) -> None:
        """Close the connections. Idempotent; any later call raises StoreError."""
        self._s.close()
