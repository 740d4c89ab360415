"""The PostgreSQL store, for several hosts sharing one queue.

* ``store``: ``PostgresStore``, the Store contract's methods: a transaction,
  the finished counts, the NOTIFY and a call to one of the modules below;
* ``inserts``: new tasks in one statement, some already claimed, idempotency keys locked;
* ``leases``: claims, renewals and the sweep, by the database's clock, fenced by tokens;
* ``outcomes``: finish, reschedule, cancel, retry, purge;
* ``reads``: get, list, counts, next_due, failed ids, schedule slots;
* ``listen``: the LISTEN connection that hears other pools' NOTIFY;
* ``schema``: the tables, their version, migration under an advisory lock;
* ``connection``: the libpq session, reconnection, transactions and batches,
  the counts' shard, errors without the password;
* ``rows``: the column lists, rows as TaskRecords.
"""

from __future__ import annotations

from executor.store.postgres.connection import describe
from executor.store.postgres.schema import SCHEMA_VERSION
from executor.store.postgres.store import CHANNEL, PostgresStore

__all__ = ["CHANNEL", "SCHEMA_VERSION", "PostgresStore", "describe"]
