"""Rows of ``offload_tasks`` as TaskRecords (new tasks' ids are
``executor.store.columns.new_ids``, as in the SQLite store)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from executor.store.records import Status, TaskRecord

COLUMNS = ("id, kind, status, attempts, max_retries, timeout_s, priority, not_before,"
           " created_at, payload, group_id, seq, idempotency_key, ref, started_at,"
           " finished_at, result, error, progress, cancelled_by, lease_owner,"
           " lease_expires_at, lease_token")
COLUMNS_NO_PAYLOAD = COLUMNS.replace("payload", "''::bytea")  # pages carry no calls


def qualified(alias: str, columns: str = COLUMNS) -> str:
    """``columns`` with each plain column name prefixed ``alias.`` (for
    statements that join another relation with the same column names)."""
    return ", ".join(c if "::" in c else f"{alias}.{c}"
                     for c in (c.strip() for c in columns.split(",")))


def record(row: Sequence[Any]) -> TaskRecord:
    """A TaskRecord from a row selected as ``COLUMNS`` (extra trailing columns
    ignored). jsonb columns arrive as dicts; a task that was never claimed has
    no lease token (``None``), as the SQLite store's records."""
    token = row[22]
    return TaskRecord(
        id=row[0], kind=row[1], status=cast(Status, row[2]), attempts=row[3],
        max_retries=row[4], timeout_s=row[5], priority=row[6], not_before=row[7],
        created_at=row[8], payload=bytes(row[9]), group_id=row[10], seq=row[11],
        idempotency_key=row[12], ref=row[13], started_at=row[14], finished_at=row[15],
        result=None if row[16] is None else bytes(row[16]), error=row[17],
        progress=row[18], cancelled_by=row[19], lease_owner=row[20],
        lease_expires_at=row[21], lease_token=token if token else None)
