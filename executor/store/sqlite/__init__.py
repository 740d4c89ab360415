"""The SQLite store, the embedded default for one host (see ``store``)."""

from executor.store.sqlite.schema import SCHEMA_VERSION
from executor.store.sqlite.store import SQLiteStore

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]
