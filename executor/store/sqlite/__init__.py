"""The SQLite store, the embedded default for one host (one file, one pool).

* ``store``: ``SQLiteStore``, the Store contract's methods: a transaction,
  the finished counts and a call to one of the modules below;
* ``inserts``: new tasks in one statement, some already claimed;
* ``leases``: claim, started, renew, recover (leases by the pool's clock, tokens unchecked);
* ``outcomes``: finish, reschedule, cancel, retry, purge;
* ``reads``: get, list, counts, next_due, failed ids, schedule slots;
* ``connection``: the file's one connection, the single-writer lock,
  transactions (power-safe or not), batches, syncing the WAL;
* ``schema``: the tables and indexes, their version, migration, rows as TaskRecords.
"""

from executor.store.sqlite.schema import SCHEMA_VERSION
from executor.store.sqlite.store import SQLiteStore

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]
