"""Task stores: the contract (``base``) and its backends, one file each.

``open_store(url)`` picks the backend from the URL scheme.
"""

from __future__ import annotations

from executor.store.base import (
    FINISHED,
    STATUSES,
    NewTask,
    Outcome,
    Store,
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
    "Store",
    "StoreError",
    "StoreLocked",
    "TaskRecord",
    "open_store",
]

_SQLITE = "sqlite:///"


def open_store(url: str, *, writer: bool = False) -> Store:
    """Open the store named by ``url``; blocks while the backend opens.

    Accepted: ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db``
    (the path is everything after ``sqlite:///``). ``writer=True`` (the pool)
    also takes the SQLite store's single-writer lock: a second pool on the
    same file is refused instead of taking over its running tasks. Raises
    StoreError for any other URL or if the backend cannot open;
    ``StoreLocked`` (a StoreError) if another pool holds the lock.
    """
    if url.startswith(_SQLITE) and len(url) > len(_SQLITE):
        return SQLiteStore(url[len(_SQLITE):], writer=writer)
    raise StoreError(f"unsupported store URL {url!r}; accepted: "
                     "'sqlite:///relative/path.db' or 'sqlite:////absolute/path.db'")
