"""The PostgreSQL schema, its version table, and migration at start.

Tables are prefixed ``offload_`` so that they can share a database (or a
schema chosen with libpq's ``options=-csearch_path=...``) with the
application's own. ``offload_schema`` holds one row: the version of the
rest. ``open`` creates or migrates under a transaction-scoped advisory lock,
so pools starting at the same moment take turns: the first creates (or
migrates), the others then find the current version and change nothing.
"""

from __future__ import annotations

import psycopg

from executor.store.records import STATUSES, StoreError

SCHEMA_VERSION = 2
# pg_advisory_xact_lock key: b"offload\x00" as a big-endian int64, only used
# to serialise offload's own migrations.
MIGRATION_LOCK = 0x6F66666C6F616400

_WAITING = "status IN ('pending', 'retrying')"
_UNFINISHED = "status IN ('pending', 'running', 'retrying')"
_ENDED = "status IN ('succeeded', 'failed', 'cancelled')"
_STATUSES = ", ".join(f"'{s}'" for s in STATUSES)

# bigint where the API accepts int64 (max_retries, seq); comparisons are
# written so that none adds to such a value (max_retries + 1 could overflow).
_VERSION_1 = (
    f"""CREATE TABLE offload_tasks (
    seqno bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    kind text NOT NULL CHECK (kind <> ''),
    status text NOT NULL CHECK (status IN ({_STATUSES})),
    attempts bigint NOT NULL CHECK (attempts >= 0),
    max_retries bigint NOT NULL CHECK (max_retries >= 0),
    timeout_s double precision NOT NULL CHECK (timeout_s > 0),
    priority integer NOT NULL,
    not_before double precision NOT NULL,
    created_at double precision NOT NULL,
    payload bytea NOT NULL,
    group_id text,
    seq bigint NOT NULL CHECK (seq >= 0),
    idempotency_key text,
    ref text,
    started_at double precision,
    finished_at double precision,
    result bytea,
    error jsonb,
    progress jsonb,
    cancelled_by text,
    lease_owner text,
    lease_expires_at double precision,
    lease_token bigint NOT NULL DEFAULT 0
)""",
    "CREATE UNIQUE INDEX offload_tasks_idempotency ON offload_tasks (idempotency_key)"
    " WHERE idempotency_key IS NOT NULL",
    # claim walks this in order, skipping tasks that are not due yet
    f"CREATE INDEX offload_tasks_waiting ON offload_tasks (priority DESC, seqno) WHERE {_WAITING}",
    f"CREATE INDEX offload_tasks_due ON offload_tasks (not_before) WHERE {_WAITING}",
    # "is an earlier member of this group unfinished" is one probe
    "CREATE INDEX offload_tasks_group ON offload_tasks (group_id, seq)"
    f" WHERE group_id IS NOT NULL AND {_UNFINISHED}",
    # the sweep of expired leases, renewal by owner, and the running count
    "CREATE INDEX offload_tasks_running ON offload_tasks (lease_expires_at)"
    " WHERE status = 'running'",
    f"CREATE INDEX offload_tasks_finished ON offload_tasks (finished_at) WHERE {_ENDED}",
    # Finished tasks per status, kept by the writers in the transaction that
    # changes them (a count(*) of every finished row would grow with the
    # queue's history). Each store writes its own shard row, so pools do
    # not queue on one hot row; counts() adds the shards up.
    """CREATE TABLE offload_counts (
    shard integer NOT NULL,
    status text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (shard, status)
)""",
)

# Each schedule's last slot taken and last run (Store.take_slot).
_VERSION_2 = ("""CREATE TABLE offload_schedule_slots (
    schedule text PRIMARY KEY,
    slot double precision NOT NULL,
    taken_at double precision NOT NULL,
    task_id text,
    task_slot double precision
)""",)
# The same statements as SQLite's (executor.store.sqlite.schema), %s placeholders:
# READ COMMITTED makes a second taker wait for the first's row lock, then
# re-check the WHERE against the committed row, so it gets no row back.
TAKE_SLOT = """INSERT INTO offload_schedule_slots (schedule, slot, taken_at) VALUES (%s, %s, %s)
ON CONFLICT (schedule) DO UPDATE SET slot = excluded.slot, taken_at = excluded.taken_at
WHERE offload_schedule_slots.slot < excluded.slot
RETURNING schedule"""
SLOT_TASK = ("UPDATE offload_schedule_slots SET task_id = %s, task_slot = %s"
             " WHERE schedule = %s AND slot = %s")

# MIGRATIONS[v] takes a database at version v to v + 1 (0: empty).
MIGRATIONS: dict[int, tuple[str, ...]] = {0: _VERSION_1, 1: _VERSION_2}


def migrate(conn: psycopg.Connection, where: str) -> None:
    """Create or migrate the schema to ``SCHEMA_VERSION`` in one transaction,
    under the migration lock. Raises StoreError (naming ``where``, never the
    password) if the database was written by a newer offload."""
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = on")  # the schema must survive a crash
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS offload_schema (version integer NOT NULL)")
        row = conn.execute("SELECT version FROM offload_schema").fetchone()
        version = 0 if row is None else int(row[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{where}: schema version {version}, but this offload reads version "
                f"{SCHEMA_VERSION}; upgrade this offload to the one that wrote it")
        for v in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[v]:
                conn.execute(statement)
        if row is None:
            conn.execute("INSERT INTO offload_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
        elif version != SCHEMA_VERSION:
            conn.execute("UPDATE offload_schema SET version = %s", (SCHEMA_VERSION,))
