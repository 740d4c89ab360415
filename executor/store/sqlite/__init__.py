"""The SQLite store, the embedded default for one host (one file, one pool).

* ``store``: ``SQLiteStore``, the Store contract's methods (its writes);
* ``inserts``: new tasks in one statement, some already claimed;
* ``reads``: get, list, counts, next_due, failed ids, schedule slots;
* ``connection``: the file's one connection, the single-writer lock,
  transactions (power-safe or not), batches, syncing the WAL;
* ``schema``: the tables and indexes, their version, migration, rows as TaskRecords.
"""

from executor.store.sqlite.schema import SCHEMA_VERSION
from executor.store.sqlite.store import SQLiteStore

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]
