"""The SQLite store's schema, its migrations and its hot statements.

Two tables: ``tasks``, whose ``seqno`` (the rowid) is submission order, and
``schedule_slots``, each schedule's last slot taken (``Store.take_slot``). Every index
entry a task's life adds, moves or removes costs the pool's one loop time,
so each index earns its place. ``migrate`` creates or upgrades a file's
schema; ``record`` turns a row selected as ``COLUMNS`` into a ``TaskRecord``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, cast

from executor.store.records import STATUSES, Status, StoreError, TaskRecord

SCHEMA_VERSION = 3
CHUNK = 500  # bound parameters per IN (...) list of ids or keys

def any_of(column: str, *values: str) -> str:
    """``(column = 'a' OR column = 'b' ...)``. Not ``column IN (...)``: SQLite
    builds a temporary table for every evaluation of an IN list of three or
    more values, about 5 us, and a CHECK or partial-index condition is
    evaluated for every row written: insert, claim and finish each paid two
    to four of them in schema 1."""
    return "(" + " OR ".join(f"{column} = '{v}'" for v in values) + ")"


UNFINISHED = any_of("status", "pending", "running", "retrying")
ENDED = any_of("status", "succeeded", "failed", "cancelled")
WAITING = "status IN ('pending', 'retrying')"  # two values: compiled as comparisons

# Every index entry a task's life adds, moves or removes costs the pool's one
# loop time, so each index earns its place.
TABLE = f"""CREATE TABLE tasks (
    seqno INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind <> ''),
    status TEXT NOT NULL CHECK {any_of("status", *STATUSES)},
    attempts INTEGER NOT NULL CHECK (attempts >= 0),
    max_retries INTEGER NOT NULL CHECK (max_retries >= 0),
    timeout_s REAL NOT NULL CHECK (timeout_s > 0),
    priority INTEGER NOT NULL,
    not_before REAL NOT NULL,
    created_at REAL NOT NULL,
    payload BLOB NOT NULL,
    group_id TEXT,
    seq INTEGER NOT NULL CHECK (seq >= 0),
    idempotency_key TEXT,
    ref TEXT,
    started_at REAL,
    finished_at REAL,
    result BLOB,
    error TEXT,
    progress TEXT,
    cancelled_by TEXT,
    lease_owner TEXT,
    lease_expires_at REAL
)"""
INDEXES = (
    "CREATE UNIQUE INDEX tasks_id ON tasks (id)",
    "CREATE UNIQUE INDEX tasks_idempotency ON tasks (idempotency_key)"
    " WHERE idempotency_key IS NOT NULL",
    # claim walks this in order; it covers the due and group filters, so tasks
    # that are not due yet are skipped without reading their rows, and
    # ``counts`` counts pending and retrying tasks from it alone.
    "CREATE INDEX tasks_waiting ON tasks (priority DESC, seqno, not_before, group_id, seq,"
    f" status) WHERE {WAITING}",
    f"CREATE INDEX tasks_due ON tasks (not_before) WHERE {WAITING}",
    # only unfinished group members: "is an earlier one unfinished" is one probe.
    "CREATE INDEX tasks_group ON tasks (group_id, seq)"
    f" WHERE group_id IS NOT NULL AND {UNFINISHED}",
    # running tasks, for recover (expired leases) and counts.
    "CREATE INDEX tasks_running ON tasks (lease_expires_at) WHERE status = 'running'",
    f"CREATE INDEX tasks_finished ON tasks (finished_at) WHERE {ENDED}",
)
# One row per schedule: the last slot taken and the last run's task. Plain SQL
# (an upsert with a condition) that PostgreSQL runs unchanged.
SLOTS_TABLE = """CREATE TABLE schedule_slots (
    schedule TEXT PRIMARY KEY,
    slot REAL NOT NULL,
    taken_at REAL NOT NULL,
    task_id TEXT,
    task_slot REAL
)"""
TAKE_SLOT = """INSERT INTO schedule_slots (schedule, slot, taken_at) VALUES (?, ?, ?)
ON CONFLICT (schedule) DO UPDATE SET slot = excluded.slot, taken_at = excluded.taken_at
WHERE schedule_slots.slot < excluded.slot
RETURNING schedule"""
SLOT_TASK = ("UPDATE schedule_slots SET task_id = ?, task_slot = ?"
             " WHERE schedule = ? AND slot = ?")
SCHEMA = (TABLE, *INDEXES, SLOTS_TABLE)
COLUMNS = ("id, kind, status, attempts, max_retries, timeout_s, priority, not_before,"
            " created_at, payload, group_id, seq, idempotency_key, ref, started_at,"
            " finished_at, result, error, progress, cancelled_by, lease_owner,"
            " lease_expires_at")
COLUMNS_NO_PAYLOAD = COLUMNS.replace("payload", "x''")  # an empty blob in its place
# Version 1 had IN-list conditions and a (status, seqno) index of unfinished
# tasks that every step of a task rewrote. A CHECK cannot be altered: the
# table is rebuilt (its rows and seqnos kept) under the new definition.
MIGRATE_1_TO_2 = (
    TABLE.replace("CREATE TABLE tasks", "CREATE TABLE tasks_2"),
    # version 1 let a seq be negative (nothing offload sends): now 0
    f"INSERT INTO tasks_2 (seqno, {COLUMNS}) SELECT seqno,"
    f" {COLUMNS.replace(', seq,', ', max(seq, 0),')} FROM tasks",
    "DROP TABLE tasks",
    "ALTER TABLE tasks_2 RENAME TO tasks",
    *INDEXES,
)
MIGRATE_2_TO_3 = (SLOTS_TABLE,)

INSERT = ("INSERT INTO tasks (id, kind, status, attempts, max_retries, timeout_s, priority,"
           " not_before, created_at, payload, group_id, seq, idempotency_key, ref,"
           " lease_owner, lease_expires_at)"
           " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def migrate(db: sqlite3.Connection, path: str) -> None:
    """Create the schema in a new file (``user_version`` 0), or upgrade one
    written by an older schema to ``SCHEMA_VERSION``, in the caller's write
    transaction. Raises StoreError (naming ``path``) if a newer offload wrote it."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        # Not executescript: it would COMMIT first and break the transaction.
        for statement in SCHEMA:
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    elif version in (1, 2):
        for statement in (*(MIGRATE_1_TO_2 if version == 1 else ()), *MIGRATE_2_TO_3):
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    elif version != SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema version {version}, but this offload reads version "
            f"{SCHEMA_VERSION}; open it with the offload that wrote it")


def record(row: Sequence[Any]) -> TaskRecord:
    """A TaskRecord from a row selected as ``COLUMNS`` (extra trailing columns ignored)."""
    return TaskRecord(
        id=row[0], kind=row[1], status=cast(Status, row[2]), attempts=row[3],
        max_retries=row[4], timeout_s=row[5], priority=row[6], not_before=row[7],
        created_at=row[8], payload=bytes(row[9]), group_id=row[10], seq=row[11],
        idempotency_key=row[12], ref=row[13], started_at=row[14], finished_at=row[15],
        result=None if row[16] is None else bytes(row[16]),
        error=None if row[17] is None else json.loads(row[17]),
        progress=None if row[18] is None else json.loads(row[18]),
        cancelled_by=row[19], lease_owner=row[20], lease_expires_at=row[21])
