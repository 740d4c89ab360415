"""The SQLite store, the embedded default for one host (see ``store``)."""

from executor.store.sqlite.store import SCHEMA_VERSION, SQLiteStore

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]
