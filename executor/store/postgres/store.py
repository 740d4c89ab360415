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

The methods here open the transaction, keep the finished counts and send
the NOTIFY, and call the module that holds the statements: inserts in
``inserts``; claims, leases and fencing in ``leases``; how a task ends or
goes back to the queue in ``outcomes``; reads in ``reads``; the connection,
transactions and the counts' shard in ``connection``; the schema in
``schema``. A write that makes work due (new tasks, a retry, a recovered task, the end
of a group member) also sends ``NOTIFY offload_tasks`` with the store's id,
delivered to listening pools when the transaction commits.

Methods block the calling thread for their round trips. Not thread-safe
(but ``sync`` may be called from any thread).
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from executor.store.postgres import inserts, reads
from executor.store.postgres import leases as claims  # ``leases`` names renew's argument
from executor.store.postgres import outcomes as ends  # ``outcomes`` names finish's
from executor.store.postgres.connection import Session
from executor.store.postgres.listen import Listener
from executor.store.postgres.schema import SLOT_TASK, TAKE_SLOT, migrate
from executor.store.records import NewTask, Outcome, ScheduleSlot, StoreError, TaskRecord

CHANNEL = "offload_tasks"


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
        conn = self._s.connect()
        try:
            migrate(conn, self.where)
        except psycopg.Error as exc:
            self.close()
            raise self._s.error(exc, "cannot create or migrate the schema") from None
        except StoreError:
            self.close()
            raise

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run the write calls made inside as one transaction, committed (and
        durable) on exit; an exception leaving the block rolls it all back.
        Each call inside is a savepoint: one that raises StoreError leaves no
        trace and the batch may go on; a lost connection raises BatchLost.
        ``enqueue(sync=True)`` and ``cancel`` raise StoreError inside."""
        with self._s.batch():
            yield

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
        with self._s.write(power_safe=power_safe) as conn:
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
        with self._s.write() as conn:
            return claims.claim(conn, n, now, owner, lease_s)

    def started(self, starts: Sequence[tuple[str, float, int | None]]
                ) -> builtins.list[str]:
        """Record ``(id, started_at, token)`` of running tasks that really
        started (``token`` None: unfenced); a stale token or a task not
        running is skipped. Returns the ids recorded. Durable on return (or
        with the batch)."""
        if not starts:
            return []
        with self._s.write() as conn:
            return claims.started(conn, starts)

    def renew(self, leases: Sequence[tuple[str, int | None]], owner: str, now: float,
              lease_s: float) -> builtins.list[str]:
        """Extend, in one statement, the leases ``owner`` still holds on
        ``(id, token)`` to the server's ``now() + lease_s`` (``now`` is unused:
        the database's clock judges leases). Returns the ids renewed; any
        other was taken back (swept, cancelled) and may run elsewhere."""
        if not leases:
            return []
        with self._s.write() as conn:
            return claims.renew(conn, leases, owner, lease_s)

    def finish(self, outcomes: Sequence[Outcome]) -> builtins.list[TaskRecord]:
        """Record how running tasks ended, in one statement; durable on return.
        Skipped: ids not running, a repeated id (the first outcome wins), and
        an outcome whose ``token`` is no longer the task's. Returns the
        changed records, without payload. Raises StoreError, changing
        nothing, if a status is not an ending."""
        for o in outcomes:
            if o.status not in ("succeeded", "failed"):
                raise StoreError(f"task {o.id}: finish takes 'succeeded' or 'failed', "
                                 f"not {o.status!r}")
        if not outcomes:
            return []
        with self._s.write() as conn:
            done = ends.finish(conn, outcomes)
            self._s.delta.update(r.status for r in done)
            if any(r.group_id is not None for r in done):
                self._notify(conn)  # the next call of the group may be due
        return done

    def reschedule(self, task_id: str, not_before: float, *, error: dict[str, Any] | None,
                   count_attempt: bool, token: int | None = None) -> TaskRecord | None:
        """Put a running task back, due at ``not_before``, lease cleared:
        ``retrying`` with the attempt kept and ``error`` stored, or (with
        ``count_attempt=False``) ``pending`` with the claim's attempt undone.
        ``None`` if missing, not running, or ``token`` is stale. Durable."""
        with self._s.write() as conn:
            changed = ends.reschedule(conn, task_id, not_before, error, count_attempt, token)
            if changed is not None:
                self._notify(conn)
        return changed

    def cancel(self, task_id: str, by: str, now: float, *, force: bool = False,
               token: int | None = None) -> TaskRecord | None:
        """Cancel a pending or retrying task, or with ``force`` a running one
        (only while it holds ``token``, if given: the claim the caller saw).
        Returns the record after the call, or ``None`` if missing. The pool
        running a task cancelled elsewhere learns it when its renewal fails.
        Durable on return; refused inside a batch."""
        with self._s.write(power_safe=True) as conn:
            cancelled = ends.cancel(conn, task_id, by, now, force, token)
            if cancelled is None:
                found = reads.select(conn, "id = %s", (task_id,))
                return found[0] if found else None
            self._s.delta["cancelled"] += 1
            if cancelled.group_id is not None:  # its next call may be due
                self._notify(conn)
        return cancelled

    def retry(self, task_ids: Sequence[str], now: float) -> builtins.list[TaskRecord]:
        """Put failed or cancelled tasks back to ``pending`` as the same tasks
        (attempts 0, due at ``now``, outcome and lease cleared); other ids are
        skipped. Durable on return; refused inside a batch. Returns the
        changed records, without payload (see ``Store.retry``)."""
        if not task_ids:
            return []
        with self._s.write(power_safe=True) as conn:
            changed, left = ends.retry(conn, task_ids, now)
            self._s.delta.subtract(left)  # no longer finished
            if changed:
                self._notify(conn)
        return changed

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
        with self._s.write() as conn:
            changed = claims.recover(conn, now, owner)
            self._s.delta["failed"] += sum(r.status == "failed" for r in changed)
            if any(r.status == "pending" for r in changed):
                self._notify(conn)
        return changed

    def purge(self, older_than: float) -> int:
        """Delete finished tasks with ``finished_at < older_than``, in chunks
        of ``outcomes.PURGE_CHUNK``, each its own transaction (one chunk
        inside a batch; rows another pool is purging are skipped); return
        how many."""
        total = 0
        while True:
            with self._s.write() as conn:
                gone = ends.purge(conn, older_than)
                self._s.delta.subtract(gone)
            total += len(gone)
            if len(gone) < ends.PURGE_CHUNK or self._s.in_batch:
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
        with self._s.write() as conn:
            return conn.execute(TAKE_SLOT, (schedule, slot, now)).fetchone() is not None

    def slot_task(self, schedule: str, slot: float, task_id: str) -> None:
        """Record ``task_id`` as the run of ``schedule``'s ``slot``, if still its last."""
        with self._s.write() as conn:
            conn.execute(SLOT_TASK, (task_id, slot, schedule, slot))

    def schedule_slots(self) -> dict[str, ScheduleSlot]:
        """Every schedule's row, by name."""
        with self._s.read() as conn:
            return reads.schedule_slots(conn)

    def open_listener(self) -> Listener:
        """A new LISTEN connection that hears of work other stores made due
        (see ``listen``). Raises StoreError if it cannot connect."""
        return Listener(self._s.url, CHANNEL, self.id)

    def sync(self) -> None:
        """Nothing to do: every commit was durable when it returned."""

    def close(self) -> None:
        """Close the connections. Idempotent; any later call raises StoreError."""
        self._s.close()
