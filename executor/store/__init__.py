"""Task stores: the contract and its backends, one package each.

- ``base``: the contract (``Store``, ``Listener``) and the transitions it enforces.
- ``records``: what stores hand around: statuses, task records, schedule slots, errors.
- ``sqlite``: the default, single-host store (one pool writes a WAL file).
- ``postgres``: the shared store (one pool per host; leases and fencing).
- ``files``: the SQLite files' private modes (they hold arguments and results).
- What both backends share: ``paging``, the ``list`` pages and cursors;
  ``columns``, new task ids and JSON text.

``open_store(url)`` picks the backend from the URL scheme. The PostgreSQL
backend (``executor.store.postgres``) is imported only when one is opened:
SQLite users never load libpq.
"""

from __future__ import annotations

from executor.store.base import Store
from executor.store.records import (
    FINISHED,
    STATUSES,
    NewTask,
    Outcome,
    ScheduleSlot,
    StoreError,
    StoreLocked,
    TaskRecord,
)
from executor.store.sqlite import SQLiteStore

__all__ = [
    "FINISHED",
    "STATUSES",
    "NewTask",
    "Outcome",
    "SQLiteStore",
    "ScheduleSlot",
    "Store",
    "StoreError",
    "StoreLocked",
    "TaskRecord",
    "open_store",
]

_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://")


def open_store(url: str, *, writer: bool = False) -> Store:
    """Open the store named by ``url``; blocks while the backend opens.

    Accepted: ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db``
    (the path is everything after ``sqlite:///``), and any libpq URI
    ``postgresql://[user[:password]@][host][:port][/dbname][?param=value...]``
    (``?host=/socket/dir`` for a Unix socket). ``writer=True`` (the pool)
    also takes the SQLite store's single-writer lock: a second pool on the
    same file is refused instead of taking over its running tasks; a
    PostgreSQL store is shared by design. Raises StoreError for any other
    URL (never quoting a password) or if the backend cannot open;
    ``StoreLocked`` (a StoreError) if another pool holds the lock.
    """
    if url.startswith(_SQLITE) and len(url) > len(_SQLITE):
        return SQLiteStore(url[len(_SQLITE):], writer=writer)
    if url.startswith(_POSTGRES):
        from executor.store.postgres import PostgresStore

        return PostgresStore(url)
    shown = url if "@" not in url else url.split("://", 1)[0] + "://***@" + url.split("@")[-1]
    raise StoreError(f"unsupported store URL {shown!r}; accepted: "
                     "'sqlite:///relative/path.db', 'sqlite:////absolute/path.db' or "
                     "'postgresql://user:password@host:port/dbname'")
