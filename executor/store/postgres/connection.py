"""One libpq connection to PostgreSQL: opening, reconnecting, transactions,
batches, the finished counts' deltas, and errors as StoreError without the
password.

The connection is in autocommit mode; ``Session.write`` opens the
transactions: a top-level one (``BEGIN ... COMMIT``) or, inside a batch, a
savepoint, so that each call stays all or nothing on its own. A lost
connection is dropped and opened again on a later call, at most once per
``RECONNECT_S``, so that a pool whose database is down fails its turns fast
instead of blocking on every one; inside a batch the loss raises BatchLost.

The store adds each write's changes to the finished counts to ``delta``;
a top-level transaction writes them to this session's shard row of
``offload_counts`` just before its COMMIT (so they commit with it), and a
write rolled back restores ``delta`` as it was before the write.
"""

from __future__ import annotations

import secrets
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import psycopg
from psycopg import conninfo

from executor.store.records import BatchLost, StoreError

RECONNECT_S = 0.5  # a failed connect is not tried again sooner
CONNECT_TIMEOUT_S = 5  # unless the URL says otherwise
SHARDS = 64  # rows per status in offload_counts


def redactor(url: str) -> Callable[[str], str]:
    """A function that removes ``url``'s password from a text (error messages
    may quote parts of the URL)."""
    secrets: list[str] = []
    try:
        password = urllib.parse.urlsplit(url).password
        if password:
            secrets += [password, urllib.parse.unquote(password)]
    except ValueError:
        pass
    try:
        secret = conninfo.conninfo_to_dict(url).get("password")
        if secret:
            secrets.append(str(secret))
    except psycopg.Error:
        pass

    def redact(text: str) -> str:
        for s in secrets:
            text = text.replace(s, "***")
        return text

    return redact


def describe(url: str) -> str:
    """``url`` for messages and logs: user, host, port and database, never the
    password (which may also come from PGPASSWORD or a password file).
    Raises StoreError if libpq cannot parse it."""
    redact = redactor(url)
    try:
        info = conninfo.conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise StoreError(f"invalid PostgreSQL store_url: {redact(str(exc))}".strip()) from None
    host = str(info.get("host") or "localhost")
    port = f":{info['port']}" if info.get("port") else ""
    user = f"{info['user']}@" if info.get("user") else ""
    return f"postgresql://{user}{host}{port}/{info.get('dbname') or ''}"


class Session:
    """The store's connection. Not thread-safe: use it from one thread."""

    def __init__(self, url: str, setup: str = "") -> None:
        """``setup``: a statement run on every new connection (a SET)."""
        self.url = url
        self._setup = setup
        self.where = describe(url)
        self._redact = redactor(url)
        self._conn: psycopg.Connection | None = None
        self._next_try = 0.0
        self.in_batch = False
        self.closed = False
        self.delta: Counter[str] = Counter()  # finished per status, this transaction
        self._shard = secrets.randbelow(SHARDS)

    def error(self, exc: BaseException, doing: str) -> StoreError:
        """A StoreError for ``exc`` that names the database, not the password."""
        return StoreError(f"PostgreSQL store {self.where}: {doing}: "
                          f"{self._redact(str(exc)).strip()}")

    def connect(self) -> psycopg.Connection:
        """The open connection, opened (again) if needed. Raises StoreError."""
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if self.closed:
            raise StoreError(f"the PostgreSQL store {self.where} is closed")
        self._drop()
        if time.monotonic() < self._next_try:
            raise StoreError(f"PostgreSQL store {self.where}: not reachable; "
                             f"trying again within {RECONNECT_S:g} s")
        options = {} if "connect_timeout" in self.url else {"connect_timeout": CONNECT_TIMEOUT_S}
        try:
            conn = psycopg.connect(self.url, autocommit=True, **options)  # type: ignore[arg-type]
            if self._setup:
                conn.execute(self._setup)
        except psycopg.Error as exc:
            self._next_try = time.monotonic() + RECONNECT_S
            raise self.error(exc, "cannot connect") from None
        self._conn = conn
        return conn

    @property
    def broken(self) -> bool:
        return self._conn is None or self._conn.closed or self._conn.broken

    def _drop(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with suppress(psycopg.Error):
                conn.close()

    def _flush_counts(self, conn: psycopg.Connection) -> None:
        delta = sorted((s, n) for s, n in self.delta.items() if n)  # one lock order
        self.delta.clear()
        if delta:
            conn.execute(
                "INSERT INTO offload_counts (shard, status, n) SELECT %s, s, d"
                " FROM unnest(%s::text[], %s::bigint[]) AS v(s, d)"
                " ON CONFLICT (shard, status) DO UPDATE SET n = offload_counts.n + excluded.n",
                (self._shard, [s for s, _ in delta], [n for _, n in delta]))

    @contextmanager
    def write(self, power_safe: bool = False) -> Iterator[psycopg.Connection]:
        """One write: a transaction, or a savepoint inside a batch.

        ``power_safe``: the caller needs its own commit (every commit is
        durable here), so inside a batch it raises StoreError. A top-level
        transaction writes ``delta`` to the counts before its COMMIT; a
        write rolled back restores ``delta`` (see the module docstring).
        psycopg errors become StoreError; a connection lost inside a batch
        becomes BatchLost.
        """
        if power_safe and self.in_batch:
            raise StoreError(f"PostgreSQL store {self.where}: a power-safe write inside "
                             "batch(); write with sync=False and sync() after the batch")
        saved = self.delta.copy()
        conn = self.connect()
        if self.in_batch and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            raise BatchLost(f"PostgreSQL store {self.where}: the batch's transaction is "
                            "gone; nothing more is written in it")
        try:
            with conn.transaction():
                yield conn
                if not self.in_batch:
                    if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                        # a statement outside a savepoint failed (a read in a batch):
                        # COMMIT would answer ROLLBACK without raising
                        raise StoreError(f"PostgreSQL store {self.where}: the "
                                         "transaction failed; nothing of it was stored")
                    self._flush_counts(conn)
        except BaseException as exc:
            # In place: an enclosing batch's rollback clears this same Counter.
            self.delta.clear()
            if self.in_batch:
                self.delta.update(saved)
            if not isinstance(exc, psycopg.Error):
                raise
            if self.broken:
                self._drop()
                self._next_try = 0.0  # the server went away: reconnect at once next time
                if self.in_batch:
                    raise BatchLost(str(self.error(exc, "the connection was lost; nothing "
                                                        "of this batch is stored"))) from None
                raise self.error(exc, "the connection was lost; the write may not have "
                                      "been stored") from None
            raise self.error(exc, "nothing was changed") from None

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run the writes made inside as one transaction, each a savepoint;
        see ``PostgresStore.batch``. A nested batch joins the outer one."""
        if self.in_batch:
            yield
            return
        with self.write():
            self.in_batch = True
            try:
                yield
            finally:
                self.in_batch = False

    @contextmanager
    def read(self) -> Iterator[psycopg.Connection]:
        """The connection for a read (in the batch's transaction if one is
        open); psycopg errors become StoreError, a lost connection is dropped."""
        conn = self.connect()
        try:
            yield conn
        except psycopg.Error as exc:
            if self.broken:
                self._drop()
            raise self.error(exc, "cannot read") from None

    def close(self) -> None:
        self.closed = True
        self._drop()
