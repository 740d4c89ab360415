"""The SQLite store: the embedded default, one file in WAL mode.

Every write method runs one transaction (a savepoint inside ``batch()``;
see ``connection``). Accepting work (``enqueue``) and ``cancel`` and
``retry`` commit power-safe (``synchronous=FULL``): on disk, power loss
included, when the method returns, so a ``202`` is never lost. The
transitions that follow (claim, finish, reschedule, renew, recover, purge)
commit with ``synchronous=NORMAL``: they survive the pool's crash
(``kill -9``) at once and reach the disk with the next FULL commit,
checkpoint or ``sync()``; a power loss can undo the latest of them, which
only makes a task run again (delivery is at-least-once anyway).

Methods block the calling thread for the time of their transaction (plus up
to ``busy_timeout`` if another process holds the file).
The pool is the only writer; the store is used from the thread that opened it.

The files hold every task's arguments and results, and a row may name code
the executor runs: they are private to the server's user, and a store that
another user could read or write is refused (``executor.store.files``).

New tasks' ids are ``executor.store.columns.new_ids``.

The methods here open the transaction, keep the finished counts and call
the module that holds the statements: inserts (some already claimed) in
``inserts``; claims, starts, renewals and recovery in ``leases``; how a task
ends or goes back to the queue in ``outcomes``; reads in ``reads``; the
connection, its lock and transactions in ``connection``; the schema in
``schema``.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from executor.store.records import NewTask, Outcome, ScheduleSlot, StoreError, TaskRecord
from executor.store.sqlite import inserts, reads
from executor.store.sqlite import leases as claims  # ``leases`` names renew's argument
from executor.store.sqlite import outcomes as ends  # ``outcomes`` names finish's
from executor.store.sqlite.connection import Session
from executor.store.sqlite.schema import SLOT_TASK, TAKE_SLOT, migrate


def _prepare(s: Session) -> None:
    """Create or migrate the schema (power-safe), then count the finished tasks."""
    with s.write(power_safe=True) as db:
        migrate(db, s.path)
    s.finished.update(reads.finished(s.conn))


class SQLiteStore:
    """A Store on one SQLite file at ``path`` (created, with its directory, if missing).

    Raises StoreError if the file is not an offload database, was written by
    a newer schema, or is not private to this user (see the module docstring).
    Not thread-safe: use it from the thread that opened it.
    """

    shared = False  # one pool writes it: the single-writer lock (writer=True)

    def __init__(self, path: str, *, writer: bool = False) -> None:
        """Open (creating or migrating) the file at ``path``, once its files pass
        ``executor.store.files``. ``writer``: take the single-writer lock
        (see ``connection``) before SQLite opens the file. Raises StoreError."""
        self.path = path
        self._s = Session(path, writer=writer, setup=_prepare)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run the write calls made inside as one transaction (NORMAL sync).

        Nothing is visible to other connections until the block ends; an
        exception leaving the block rolls every call back. Each call inside is
        a savepoint: one that raises StoreError leaves no trace and the batch
        may go on. Power-safe writes (``enqueue`` with ``sync=True``,
        ``cancel``) raise StoreError inside a batch.
        """
        with self._s.batch():
            yield

    def enqueue(self, tasks: Sequence[NewTask], now: float, *, sync: bool = True
                ) -> list[TaskRecord]:
        """Insert ``tasks`` in one transaction, all or nothing; durable on return.

        With ``sync=False`` the commit survives a crash of this process but
        reaches the disk only with the next ``sync()``: the caller must call
        it before it acknowledges the tasks (the pool does, off its loop).

        A known ``idempotency_key`` (stored, or earlier in this batch) returns
        the existing record instead of inserting. Records come back in input
        order. Raises StoreError, storing nothing, if any task is refused
        (empty kind, negative max_retries, timeout_s <= 0).
        """
        return self._insert(tasks, now, sync, 0, "", 0.0)[0]

    def enqueue_and_claim(self, tasks: Sequence[NewTask], now: float, n: int, owner: str,
                          lease_s: float) -> tuple[list[TaskRecord], list[TaskRecord]]:
        """``enqueue(tasks, now, sync=False)``, inserting up to ``n`` of the new
        tasks already claimed by ``owner`` (see the Store protocol): one write
        per task instead of an insert and a claim."""
        return self._insert(tasks, now, False, n, owner, lease_s)

    def _insert(self, tasks: Sequence[NewTask], now: float, sync: bool, n: int, owner: str,
                lease_s: float) -> tuple[list[TaskRecord], list[TaskRecord]]:
        with self._s.write(power_safe=sync) as db:
            return inserts.insert(db, tasks, now, n, owner, lease_s)

    def claim(self, n: int, now: float, owner: str, lease_s: float) -> list[TaskRecord]:
        """Move up to ``n`` due tasks to ``running`` under ``owner``'s lease until
        ``now + lease_s``; ``attempts`` +1, ``started_at`` cleared until
        ``started``. Due and order as in the Store protocol. One transaction,
        durable on return."""
        if n <= 0:
            return []
        with self._s.write() as db:
            return claims.claim(db, n, now, owner, lease_s)

    def started(self, starts: Sequence[tuple[str, float, int | None]]
                ) -> list[str]:
        """Set ``started_at`` of the running tasks among ``starts`` (``(id, time,
        token)``: the only writer has no stale tokens, so a token is not
        checked); others are skipped. Returns the ids set.
        Durable on return (or with the batch)."""
        with self._s.write() as db:
            return claims.started(db, starts)

    def renew(self, leases: Sequence[tuple[str, int | None]], owner: str, now: float,
              lease_s: float) -> list[str]:
        """Extend to ``now + lease_s`` the leases of the ``(id, token)`` tasks
        running under ``owner`` (tokens unchecked, as in ``started``); others
        are skipped. Returns the ids renewed. Durable on return."""
        with self._s.write() as db:
            return claims.renew(db, leases, owner, now, lease_s)

    def finish(self, outcomes: Sequence[Outcome]) -> list[TaskRecord]:
        """Record how running tasks ended, in one transaction; durable on return.

        Ids not running (missing, finished, cancelled) are skipped, as is a
        repeated id. ``started_at`` is kept from ``started`` unless the outcome
        gives one. Returns the changed records, without payload. Raises
        StoreError, changing nothing, if a status is not an ending.
        """
        for o in outcomes:
            if o.status not in ("succeeded", "failed"):
                raise StoreError(f"task {o.id}: finish takes 'succeeded' or 'failed', "
                                 f"not {o.status!r}")
        with self._s.write() as db:
            done = ends.finish(db, outcomes)
            self._s.delta.update(r.status for r in done)
        return done

    def reschedule(self, task_id: str, not_before: float, *, error: dict[str, Any] | None,
                   count_attempt: bool, token: int | None = None) -> TaskRecord | None:
        """Put a running task back, due at ``not_before``, lease cleared.

        ``count_attempt=True``: ``retrying``, attempt kept, ``error`` stored.
        ``False``: ``pending`` with the claim's attempt undone (it never
        started). ``None`` if the task is missing or not running (``token``
        unchecked, as in ``started``). Durable on return.
        """
        with self._s.write() as db:
            return ends.reschedule(db, task_id, not_before, error, count_attempt)

    def cancel(self, task_id: str, by: str, now: float, *, force: bool = False,
               token: int | None = None) -> TaskRecord | None:
        """Cancel a pending or retrying task, or a running one if ``force``
        (``token`` unchecked: the only writer has no stale claims).

        Returns the record after the call (its status tells whether it was
        cancelled; a finished or, without force, running task is unchanged),
        or ``None`` if missing. Durable on return; refused inside a batch.
        """
        with self._s.write(power_safe=True) as db:
            cancelled = ends.cancel(db, task_id, by, now, force)
            if cancelled is not None:
                self._s.delta["cancelled"] += 1
        return cancelled if cancelled is not None else self.get(task_id)

    def retry(self, task_ids: Sequence[str], now: float) -> list[TaskRecord]:
        """Put failed or cancelled tasks back to ``pending``, attempts reset,
        due at ``now``, their outcome cleared; other ids skipped. One FULL
        transaction: durable on return. Returns the changed records, without
        payload (see ``Store.retry``)."""
        with self._s.write(power_safe=True) as db:
            out, left = ends.retry(db, task_ids, now)
            self._s.delta.subtract(left)  # no longer finished (applied on commit)
        return out

    def recover(self, now: float, owner: str | None = None, *,
                everything: bool = False) -> list[TaskRecord]:
        """Put running tasks back: every one if ``everything`` (for the only
        writer, at its start), else all of ``owner``'s if given, else those
        whose lease expired by ``now``. One that never started (``started_at``
        unset since its claim) goes to ``pending`` with its attempt undone; one
        that did goes to ``pending`` with the attempt kept, or to ``failed``
        with reason ``lost`` if it has no attempts left. Returns the changed
        records; durable on return."""
        with self._s.write() as db:
            changed = claims.recover(db, now, owner, everything)
            self._s.delta["failed"] += sum(r.status == "failed" for r in changed)
        return changed

    def purge(self, older_than: float) -> int:
        """Delete finished tasks with ``finished_at < older_than``; return how many.
        Durable on return."""
        with self._s.write() as db:
            gone = ends.purge(db, older_than)
            self._s.delta.subtract(gone)
        return len(gone)

    def take_slot(self, schedule: str, slot: float, now: float) -> bool:
        """Record ``slot`` as ``schedule``'s last slot if it is later than the
        one stored (or none is); True if this call did. Durable on return
        (or with the batch)."""
        with self._s.write() as db:
            return db.execute(TAKE_SLOT, (schedule, slot, now)).fetchone() is not None

    def slot_task(self, schedule: str, slot: float, task_id: str) -> None:
        """Record ``task_id`` as the run of ``schedule``'s ``slot``, if that is
        still its last slot taken. Durable on return (or with the batch)."""
        with self._s.write() as db:
            db.execute(SLOT_TASK, (task_id, slot, schedule, slot))

    def open_listener(self) -> None:
        """None: the only writer knows of every change itself."""
        return None

    def sync(self) -> None:
        """Make every committed change durable against power loss (fdatasync of
        the WAL). Blocks; another thread may call it while this one keeps
        writing (see ``Session.sync``)."""
        self._s.sync()

    def close(self) -> None:
        """Close the file (and release the writer lock). Idempotent; any later
        call raises StoreError."""
        self._s.close()

    # -- reads: none blocks on the writer ------------------------------------------

    def get(self, task_id: str) -> TaskRecord | None:
        """The task's record, or ``None`` if missing. Does not block on the writer."""
        records = reads.select(self._s.conn, "id = ?", (task_id,))
        return records[0] if records else None

    def list(self, *, status: str | None = None, kind: str | None = None, limit: int = 50,
             cursor: str | None = None) -> tuple[builtins.list[TaskRecord], str | None]:
        """A page of up to ``limit`` records, newest first, filtered by ``status``
        and ``kind``, and the cursor of the next page (``None`` on the last).
        Records come without payload (``b""``): a page of large calls would
        otherwise be read whole for nothing. Raises StoreError for an unknown
        status, a limit below 1 or a bad cursor."""
        return reads.page(self._s.conn, status, kind, limit, cursor)

    def counts(self) -> dict[str, int]:
        """Number of tasks in each status, every status present (zeros included)."""
        return reads.counts(self._s.conn, self._s.finished)

    def next_due(self) -> float | None:
        """Earliest ``not_before`` among pending/retrying tasks, or ``None`` if none.
        The task may still wait behind its group."""
        return reads.next_due(self._s.conn)

    def failed_ids(self, *, kind: str | None = None, finished_after: float | None = None,
                   finished_before: float | None = None, limit: int = 100
                   ) -> builtins.list[str]:
        """Up to ``limit`` failed tasks' ids matching, oldest failure first."""
        return reads.failed_ids(self._s.conn, kind, finished_after, finished_before, limit)

    def schedule_slots(self) -> dict[str, ScheduleSlot]:
        """Every schedule's row, by name. Does not block on the writer."""
        return reads.schedule_slots(self._s.conn)
