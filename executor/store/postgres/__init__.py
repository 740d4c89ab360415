"""The PostgreSQL store, for several hosts sharing one queue.

* ``store``: ``PostgresStore``, the Store contract's methods;
* ``leases``: claims, renewals and the sweep, by the database's clock, fenced by tokens;
* ``reads``: get, list, counts, next_due;
* ``schema``: the tables, their version, migration under an advisory lock;
* ``connection``: the libpq session, reconnection, errors without the password;
* ``rows``: rows as TaskRecords, new ids.
"""

from __future__ import annotations

from executor.store.postgres.connection import describe
from executor.store.postgres.schema import SCHEMA_VERSION
from executor.store.postgres.store import CHANNEL, PostgresStore

__all__ = ["CHANNEL", "SCHEMA_VERSION", "PostgresStore", "describe"]
