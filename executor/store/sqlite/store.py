"""The SQLite store: the embedded default, one file in WAL mode.

Every write method runs one ``BEGIN IMMEDIATE ... COMMIT`` transaction.
Accepting work (``enqueue``) and ``cancel`` commit with ``synchronous=FULL``:
on disk, power loss included, when the method returns, so a ``202`` is
never lost. The transitions that follow (claim, finish, reschedule, renew,
recover, purge) commit with ``synchronous=NORMAL``: they survive the pool's
crash (``kill -9``) at once and reach the disk with the next FULL commit or
checkpoint; a power loss can undo the latest of them, which only makes a
task run again (delivery is at-least-once anyway). An fsync costs ~0.5 ms
here, so this is what lets the pool finish thousands of tasks a second.

Methods block the calling thread for the time of their transaction (plus up
to ``busy_timeout`` if another process holds the file).
The pool is the only writer; the store is used from the thread that opened it.

The files hold every task's arguments and results, and a row may name code
the executor runs: they are private to the server's user, and a store that
another user could read or write is refused (``executor.store.files``).

Ids are ``f"{ms:012x}{random:016x}"``:
sortable by creation time, unguessable, 28 characters.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from executor.store.base import (
    STATUSES,
    BatchLost,
    NewTask,
    Outcome,
    ScheduleSlot,
    StoreError,
    StoreLocked,
    TaskRecord,
)
from executor.store.files import open_private, private_file
from executor.store.paging import page_filter, page_rows
from executor.store.sqlite.schema import (
    CLAIM,
    COLUMNS,
    COLUMNS_NO_PAYLOAD,
    ENDED,
    INSERT,
    LOST,
    MIGRATE_1_TO_2,
    MIGRATE_2_TO_3,
    SCHEMA,
    SCHEMA_VERSION,
    SLOT_TASK,
    TAKE_SLOT,
    UNFINISHED,
    record,
    to_json,
)

_BUSY_TIMEOUT_MS = 5000
_CACHE_KIB = 65536  # SQLite page cache per connection
_CHUNK = 500  # bound parameters per IN (...) lookup


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
        (``_lock_writer``) before SQLite opens the file. Raises StoreError."""
        self.path = path
        self._file = path  # the database's real path, once checked
        self._db: sqlite3.Connection | None = None
        self._wal_fd: int | None = None
        self._lock_fd: int | None = None
        self._in_batch = False
        # Finished tasks per status, exact: counted once at open, then kept by
        # the write methods (deltas applied only when their transaction commits).
        self._finished: Counter[str] = Counter()
        self._delta: Counter[str] = Counter()
        try:
            self._file = private_file(path)
            if writer:
                self._lock_fd = _lock_writer(self._file)
            # isolation_level=None: the module never opens transactions on its
            # own; every write below says BEGIN IMMEDIATE ... COMMIT itself.
            self._db = sqlite3.connect(
                self._file, isolation_level=None, check_same_thread=True)
            self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            # The default 2 MiB page cache spills dirty pages mid-transaction
            # once a few index pages are touched (a batch of submissions
            # touches six indexes); 64 MiB keeps a busy queue's working set.
            self._db.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{path}: cannot switch SQLite to WAL mode (got {mode!r})")
            # FULL: fsync the WAL on every commit, so a 202 survives power loss.
            self._db.execute("PRAGMA synchronous = FULL")
            self._sync_full = True
            with self._write(power_safe=True) as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    # Not executescript: it would COMMIT first and break the transaction.
                    for statement in SCHEMA:
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                elif version in (1, 2):
                    for statement in (*(MIGRATE_1_TO_2 if version == 1 else ()),
                                      *MIGRATE_2_TO_3):
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                elif version != SCHEMA_VERSION:
                    raise StoreError(
                        f"{path}: schema version {version}, but this offload reads version "
                        f"{SCHEMA_VERSION}; open it with the offload that wrote it")
            self._finished.update(dict(self._db.execute(
                f"SELECT status, count(*) FROM tasks WHERE {ENDED} GROUP BY status")))
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise StoreError(f"cannot open the SQLite store {path}: {exc}") from exc
        except StoreError:
            self.close()
            raise

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"the SQLite store {self.path} is closed")
        return self._db

    @contextmanager
    def _write(self, power_safe: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction; committed on normal exit, rolled back on error.

        ``power_safe`` commits with an fsync (FULL); otherwise NORMAL (see the
        module docstring).
        """
        db = self._conn
        if self._in_batch:
            # The enclosing batch() commits everything; a savepoint keeps this
            # call all or nothing on its own.
            if power_safe:
                raise StoreError(f"{self.path}: a power-safe write inside batch(); "
                                 "write with sync=False and sync() after the batch")
            if not db.in_transaction:
                # SQLite itself rolled the batch back (disk full, I/O error): a
                # savepoint now would open, and its release commit, a new one.
                raise BatchLost(f"{self.path}: the batch's transaction was rolled back by "
                                "an earlier error; nothing more is written in it")
            delta = self._delta.copy()
            db.execute("SAVEPOINT call")
            try:
                yield db
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK TO call")
                    db.execute("RELEASE call")
                self._delta = delta
                if isinstance(exc, sqlite3.Error):
                    if not db.in_transaction:  # SQLite rolled the whole batch back
                        raise BatchLost(f"{self.path}: {exc}; the batch's transaction was "
                                        "rolled back, nothing of it is stored") from exc
                    raise StoreError(f"{self.path}: {exc}; nothing was changed") from exc
                raise
            db.execute("RELEASE call")
            return
        if power_safe != self._sync_full:
            db.execute(f"PRAGMA synchronous = {'FULL' if power_safe else 'NORMAL'}")
            self._sync_full = power_safe
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot start a write: {exc}") from exc
        try:
            yield db
            db.execute("COMMIT")
            self._finished.update(self._delta)
            self._delta.clear()
        except BaseException as exc:
            self._delta.clear()
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.path}: {exc}; nothing was changed") from exc
            raise

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run the write calls made inside as one transaction (NORMAL sync).

        Nothing is visible to other connections until the block ends; an
        exception leaving the block rolls every call back. Each call inside is
        a savepoint: one that raises StoreError leaves no trace and the batch
        may go on. Power-safe writes (``enqueue`` with ``sync=True``,
        ``cancel``) raise StoreError inside a batch.
        """
        if self._in_batch:
            yield
            return
        with self._write():
            self._in_batch = True
            try:
                yield
            finally:
                self._in_batch = False

    def _select(self, where: str, params: Sequence[Any] = ()) -> list[TaskRecord]:
        rows = self._conn.execute(f"SELECT {COLUMNS} FROM tasks WHERE {where}", params)
        return [record(row) for row in rows]

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
        keys = list({t.idempotency_key for t in tasks if t.idempotency_key is not None})
        prefix = f"{int(now * 1000):012x}"
        suffixes = os.urandom(8 * len(tasks)).hex()  # one system call for the batch
        out: list[TaskRecord] = []
        fresh: list[int] = []  # positions in ``out`` of the records inserted
        with self._write(power_safe=sync) as db:
            by_key: dict[str, TaskRecord] = {}
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i:i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for record in self._select(f"idempotency_key IN ({marks})", chunk):
                    by_key[cast(str, record.idempotency_key)] = record
            for i, t in enumerate(tasks):
                if t.idempotency_key is not None and t.idempotency_key in by_key:
                    out.append(by_key[t.idempotency_key])
                    continue
                record = TaskRecord(
                    id=prefix + suffixes[16 * i:16 * i + 16], kind=t.kind, status="pending",
                    attempts=0, max_retries=t.max_retries, timeout_s=t.timeout_s,
                    priority=t.priority, not_before=t.not_before or now, created_at=now,
                    payload=t.payload, group_id=t.group_id, seq=t.seq,
                    idempotency_key=t.idempotency_key, ref=t.ref)
                if t.idempotency_key is not None:
                    by_key[t.idempotency_key] = record
                fresh.append(len(out))
                out.append(record)
            picked = self._pick(db, [out[i] for i in fresh], now, n) if n > 0 else []
            claimed = {r.id for r in picked}
            expires = now + lease_s
            rows = []
            for i in fresh:
                r = out[i]
                run = r.id in claimed
                rows.append((r.id, r.kind, "running" if run else "pending", 1 if run else 0,
                             r.max_retries, r.timeout_s, r.priority, r.not_before, now,
                             r.payload, r.group_id, r.seq, r.idempotency_key, r.ref,
                             owner if run else None, expires if run else None))
            db.executemany(INSERT, rows)
        # Built, not dataclasses.replace()d: that costs ~5 us a record, this ~1.5.
        return out, [TaskRecord(
            id=r.id, kind=r.kind, status="running", attempts=1, max_retries=r.max_retries,
            timeout_s=r.timeout_s, priority=r.priority, not_before=r.not_before,
            created_at=r.created_at, payload=r.payload, group_id=r.group_id, seq=r.seq,
            idempotency_key=r.idempotency_key, ref=r.ref, lease_owner=owner,
            lease_expires_at=expires) for r in picked]

    @staticmethod
    def _pick(db: sqlite3.Connection, new: list[TaskRecord], now: float, n: int
              ) -> list[TaskRecord]:
        """Up to ``n`` of the ``new`` records that ``claim`` could take now, in
        claim order. A group's seq 0 needs no look at the store: seqs are
        never negative, so nothing unfinished can come before it."""
        first_seq: dict[str, int] = {}  # the lowest seq of each group among ``new``
        for r in new:
            if r.group_id is not None and r.seq < first_seq.get(r.group_id, r.seq + 1):
                first_seq[r.group_id] = r.seq
        due = []
        for r in new:
            if r.not_before > now:
                continue
            if r.group_id is not None and (r.seq != first_seq[r.group_id] or (
                    r.seq > 0 and db.execute(
                        "SELECT 1 FROM tasks INDEXED BY tasks_group WHERE group_id = ?"
                        f" AND seq < ? AND {UNFINISHED} LIMIT 1",
                        (r.group_id, r.seq)).fetchone() is not None)):
                continue
            due.append(r)
        due.sort(key=lambda r: -r.priority)  # stable: input order within a priority
        return due[:n]

    def claim(self, n: int, now: float, owner: str, lease_s: float) -> list[TaskRecord]:
        """Move up to ``n`` due tasks to ``running`` under ``owner``'s lease until
        ``now + lease_s``; ``attempts`` +1, ``started_at`` cleared until
        ``started``. Due and order as in the Store protocol. One transaction,
        durable on return."""
        if n <= 0:
            return []
        with self._write() as db:
            rows = db.execute(CLAIM, {"now": now, "owner": owner,
                                       "expires": now + lease_s, "n": n}).fetchall()
        # RETURNING has no defined order: restore priority, then submission order.
        rows.sort(key=lambda row: (-row[6], row[-1]))
        return [record(row) for row in rows]

    def started(self, starts: Sequence[tuple[str, float] | tuple[str, float, int | None]]
                ) -> list[str]:
        """Set ``started_at`` of the running tasks among ``starts`` (``(id, time)``
        or ``(id, time, token)``: the only writer has no stale tokens, so a
        token is not checked); others are skipped. Returns the ids set.
        Durable on return (or with the batch)."""
        done: list[str] = []
        with self._write() as db:
            for start in starts:
                if db.execute("UPDATE tasks SET started_at = ? WHERE id = ?"
                              " AND status = 'running' RETURNING 1",
                              (start[1], start[0])).fetchone() is not None:
                    done.append(start[0])
        return done

    def renew(self, leases: Sequence[tuple[str, int | None]], owner: str, now: float,
              lease_s: float) -> list[str]:
        """Extend to ``now + lease_s`` the leases of the ``(id, token)`` tasks
        running under ``owner`` (tokens unchecked, as in ``started``); others
        are skipped. Returns the ids renewed. Durable on return."""
        done: list[str] = []
        with self._write() as db:
            for task_id, _ in leases:
                if db.execute("UPDATE tasks SET lease_expires_at = ? WHERE id = ?"
                              " AND status = 'running' AND lease_owner = ? RETURNING 1",
                              (now + lease_s, task_id, owner)).fetchone() is not None:
                    done.append(task_id)
        return done

    def finish(self, outcomes: Sequence[Outcome]) -> list[TaskRecord]:
        """Record how running tasks ended, in one transaction; durable on return.

        Ids not running (missing, finished, cancelled) are skipped, as is a
        repeated id. ``started_at`` is kept from ``started`` unless the outcome
        gives one. Returns the changed records, without payload.
        """
        for o in outcomes:
            if o.status not in ("succeeded", "failed"):
                raise StoreError(f"task {o.id}: finish takes 'succeeded' or 'failed', "
                                 f"not {o.status!r}")
        by_id = {o.id: o for o in reversed(outcomes)}  # the first outcome of an id wins
        rows = [(o.id, o.status, o.finished_at, o.started_at, o.result, to_json(o.error),
                 to_json(o.progress)) for o in reversed(by_id.values())]
        out: list[TaskRecord] = []
        with self._write() as db:
            # One UPDATE ... FROM (VALUES ...) per chunk: no SELECT first, one
            # statement for the whole turn's outcomes (the pool's hot path).
            for i in range(0, len(rows), _CHUNK):
                chunk = rows[i:i + _CHUNK]
                values = ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
                params = [p for row in chunk for p in row]
                done = [record(row) for row in db.execute(
                    "UPDATE tasks SET status = v.column2, finished_at = v.column3,"
                    " started_at = coalesce(v.column4, tasks.started_at), result = v.column5,"
                    " error = v.column6, progress = v.column7, lease_owner = NULL,"
                    f" lease_expires_at = NULL FROM (VALUES {values}) AS v"
                    " WHERE tasks.id = v.column1 AND tasks.status = 'running'"
                    f" RETURNING {COLUMNS_NO_PAYLOAD}", params).fetchall()]
                self._delta.update(r.status for r in done)
                out.extend(done)
        return out

    def reschedule(self, task_id: str, not_before: float, *, error: dict[str, Any] | None,
                   count_attempt: bool, token: int | None = None) -> TaskRecord | None:
        """Put a running task back, due at ``not_before``, lease cleared.

        ``count_attempt=True``: ``retrying``, attempt kept, ``error`` stored.
        ``False``: ``pending`` with the claim's attempt undone (it never
        started). ``None`` if the task is missing or not running. Durable on return.
        """
        status, undo = ("retrying", 0) if count_attempt else ("pending", 1)
        with self._write() as db:
            row = db.execute(
                "UPDATE tasks SET status = ?, attempts = max(attempts - ?, 0), not_before = ?,"
                " error = coalesce(?, error), lease_owner = NULL, lease_expires_at = NULL"
                f" WHERE id = ? AND status = 'running' RETURNING {COLUMNS}",
                (status, undo, not_before, to_json(error), task_id)).fetchone()
        return None if row is None else record(row)

    def cancel(self, task_id: str, by: str, now: float, *, force: bool = False,
               token: int | None = None) -> TaskRecord | None:
        """Cancel a pending or retrying task, or a running one if ``force``
        (``token`` unchecked: the only writer has no stale claims).

        Returns the record after the call (its status tells whether it was
        cancelled; a finished or, without force, running task is unchanged),
        or ``None`` if missing. Durable on return.
        """
        with self._write(power_safe=True) as db:
            row = db.execute(
                "UPDATE tasks SET status = 'cancelled', cancelled_by = ?, finished_at = ?,"
                " lease_owner = NULL, lease_expires_at = NULL WHERE id = ?"
                " AND (status IN ('pending', 'retrying') OR (status = 'running' AND ?))"
                f" RETURNING {COLUMNS}", (by, now, task_id, force)).fetchone()
            if row is not None:
                self._delta["cancelled"] += 1
        if row is not None:
            return record(row)
        return self.get(task_id)

    def retry(self, task_ids: Sequence[str], now: float) -> list[TaskRecord]:
        """Put failed or cancelled tasks back to ``pending``, attempts reset,
        due at ``now``, their outcome cleared; other ids skipped. One FULL
        transaction: durable on return. Returns the changed records, without
        payload (see ``Store.retry``)."""
        ids = list(dict.fromkeys(task_ids))
        out: list[TaskRecord] = []
        with self._write(power_safe=True) as db:
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i:i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                where = f"id IN ({marks}) AND status IN ('failed', 'cancelled')"
                # the finished counts lose what moves back (applied on commit)
                self._delta.subtract({status: n for status, n in db.execute(
                    f"SELECT status, count(*) FROM tasks WHERE {where} GROUP BY status",
                    chunk)})
                out += [record(row) for row in db.execute(
                    "UPDATE tasks SET status = 'pending', attempts = 0, not_before = ?,"
                    " started_at = NULL, finished_at = NULL, result = NULL, error = NULL,"
                    " progress = NULL, cancelled_by = NULL, lease_owner = NULL,"
                    f" lease_expires_at = NULL WHERE {where} RETURNING {COLUMNS_NO_PAYLOAD}",
                    [now, *chunk])]
        return out

    def failed_ids(self, *, kind: str | None = None, finished_after: float | None = None,
                   finished_before: float | None = None, limit: int = 100) -> list[str]:
        """Up to ``limit`` failed tasks' ids matching, oldest failure first."""
        where, params = ["status = 'failed'"], []
        for clause, value in (("kind = ?", kind), ("finished_at >= ?", finished_after),
                              ("finished_at < ?", finished_before)):
            if value is not None:
                where.append(clause)
                params.append(value)
        rows = self._conn.execute(
            f"SELECT id FROM tasks WHERE {' AND '.join(where)}"
            " ORDER BY finished_at, seqno LIMIT ?", [*params, limit])
        return [task_id for (task_id,) in rows]

    def open_listener(self) -> None:
        """None: the only writer knows of every change itself."""
        return None

    def get(self, task_id: str) -> TaskRecord | None:
        """The task's record, or ``None`` if missing. Does not block on the writer."""
        records = self._select("id = ?", (task_id,))
        return records[0] if records else None

    def counts(self) -> dict[str, int]:
        """Number of tasks in each status, every status present (zeros included)."""
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        counts.update(self._finished)
        counts.update(self._conn.execute(
            "SELECT status, count(*) FROM tasks INDEXED BY tasks_waiting"
            " WHERE status IN ('pending', 'retrying') GROUP BY status"))
        counts["running"] = self._conn.execute(
            "SELECT count(*) FROM tasks INDEXED BY tasks_running WHERE status = 'running'"
        ).fetchone()[0]
        return counts

    def next_due(self) -> float | None:
        """Earliest ``not_before`` among pending/retrying tasks, or ``None`` if none.
        The task may still wait behind its group."""
        row = self._conn.execute(
            "SELECT not_before FROM tasks INDEXED BY tasks_due"
            " WHERE status IN ('pending', 'retrying') ORDER BY not_before LIMIT 1").fetchone()
        return None if row is None else cast(float, row[0])

    def recover(self, now: float, owner: str | None = None, *,
                everything: bool = False) -> list[TaskRecord]:
        """Put running tasks back: all of ``owner``'s if given, else those whose
        lease expired by ``now``. One that never started (``started_at`` unset
        since its claim) goes to ``pending`` with its attempt undone; one that
        did goes to ``pending`` with the attempt kept, or to ``failed`` with
        reason ``lost`` if it has no attempts left. Returns the changed
        records; durable on return."""
        which, param = (("lease_owner = ?", owner) if owner is not None
                        else ("lease_expires_at <= ?", now))
        if everything:  # at the start of the only writer: nobody else holds a lease
            which, param = ("? IS NOT NULL", 1)
        where = f"status = 'running' AND {which}"
        with self._write() as db:
            rows = db.execute(
                "UPDATE tasks SET status = 'pending', attempts = max(attempts - 1, 0),"
                " lease_owner = NULL, lease_expires_at = NULL"
                f" WHERE {where} AND started_at IS NULL RETURNING {COLUMNS}",
                (param,)).fetchall()
            lost = db.execute(
                f"UPDATE tasks SET status = 'failed', finished_at = ?, error = {LOST},"
                " lease_owner = NULL, lease_expires_at = NULL"
                f" WHERE {where} AND attempts >= max_retries + 1 RETURNING {COLUMNS}",
                (now, param)).fetchall()
            self._delta["failed"] += len(lost)
            rows += lost
            rows += db.execute(
                "UPDATE tasks SET status = 'pending', lease_owner = NULL,"
                f" lease_expires_at = NULL WHERE {where} RETURNING {COLUMNS}",
                (param,)).fetchall()
        return [record(row) for row in rows]

    def purge(self, older_than: float) -> int:
        """Delete finished tasks with ``finished_at < older_than``; return how many.
        Durable on return."""
        with self._write() as db:
            gone = db.execute(f"DELETE FROM tasks INDEXED BY tasks_finished WHERE {ENDED}"
                              " AND finished_at < ? RETURNING status", (older_than,)).fetchall()
            self._delta.subtract(status for (status,) in gone)
        return len(gone)

    def list(self, *, status: str | None = None, kind: str | None = None, limit: int = 50,
             cursor: str | None = None) -> tuple[list[TaskRecord], str | None]:
        """A page of up to ``limit`` records, newest first, filtered by ``status``
        and ``kind``, and the cursor of the next page (``None`` on the last).
        Records come without payload (``b""``): a page of large calls would
        otherwise be read whole for nothing. Raises StoreError for an unknown
        status, a limit below 1 or a bad cursor."""
        where, params = page_filter(status, kind, limit, cursor, "?")
        rows, next_cursor = page_rows(self._conn.execute(
            f"SELECT {COLUMNS_NO_PAYLOAD}, seqno FROM tasks WHERE {where}"
            " ORDER BY seqno DESC LIMIT ?", (*params, limit + 1)).fetchall(), limit)
        return [record(row) for row in rows], next_cursor

    def take_slot(self, schedule: str, slot: float, now: float) -> bool:
        """Record ``slot`` as ``schedule``'s last slot if it is later than the
        one stored (or none is); True if this call did. Durable on return
        (or with the batch)."""
        with self._write() as db:
            return db.execute(TAKE_SLOT, (schedule, slot, now)).fetchone() is not None

    def slot_task(self, schedule: str, slot: float, task_id: str) -> None:
        """Record ``task_id`` as the run of ``schedule``'s ``slot``, if that is
        still its last slot taken. Durable on return (or with the batch)."""
        with self._write() as db:
            db.execute(SLOT_TASK, (task_id, slot, schedule, slot))

    def schedule_slots(self) -> dict[str, ScheduleSlot]:
        """Every schedule's row, by name. Does not block on the writer."""
        rows = self._conn.execute(
            "SELECT schedule, slot, taken_at, task_id, task_slot FROM schedule_slots")
        return {row[0]: ScheduleSlot(*row) for row in rows}

    def sync(self) -> None:
        """Make every committed change durable against power loss (fdatasync of
        the WAL, as ``synchronous=FULL`` does at each commit). Blocks; touches
        only its own file descriptor, so another thread may call it while this
        one keeps writing."""
        wal = self._file + "-wal"  # beside the real file, as SQLite puts it
        try:
            ino = os.stat(wal).st_ino
        except FileNotFoundError:
            return  # checkpointed and removed: the main file was synced first
        fd = self._wal_fd
        if fd is None or os.fstat(fd).st_ino != ino:
            fd = os.open(wal, os.O_RDONLY)
            old, self._wal_fd = self._wal_fd, fd
            if old is not None:
                os.close(old)
        os.fdatasync(fd)

    def close(self) -> None:
        """Close the file (and release the writer lock). Idempotent; any later
        call raises StoreError."""
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._db is not None:
            db, self._db = self._db, None
            db.close()


def _lock_writer(path: str) -> int:
    """Take the writer lock of the store at ``path``: ``flock`` on ``<path>.lock``,
    which holds the owner's pid. Returns the lock's fd, to keep open (the lock
    goes with the process, however it ends). Raises StoreError if another
    process holds it: two pools on one file would each take the other's
    running tasks for lost (``recover``) and run them again: StoreLocked
    then (a StoreError). Also raises
    StoreError, writing nothing, if the lock file is a symlink, a hard link,
    or another user's (``executor.store.files``): it is truncated and written."""
    lock = path + ".lock"
    fd = open_private(path, lock, os.O_RDWR | os.O_CREAT)
    if os.fstat(fd).st_nlink != 1:
        os.close(fd)
        raise StoreError(f"the SQLite store {path}: {lock} has other hard links; offload "
                         "truncates it, and would truncate them too: remove it")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StoreLocked(f"{path}: another offload pool (pid {owner}) is using this store; "
                         "a SQLite store has one pool: stop that server, or give this one "
                         "another store_url") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
