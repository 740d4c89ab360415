"""LISTEN on its own connection: how an idle pool hears of new work at once.

Writers send ``NOTIFY offload_tasks, '<store id>'`` in the transaction that
makes work due; PostgreSQL delivers it to every listening connection when
that transaction commits. The pool watches ``fileno()`` on its loop and
calls ``drain()`` when it is readable. A pooler in transaction mode does
not pass notifications on: the pool also polls (``executor.pool.wakeup``).
"""

from __future__ import annotations

import contextlib

import psycopg

from executor.store.postgres.connection import CONNECT_TIMEOUT_S, Session


class Listener:
    """A connection that LISTENs on ``channel``; notices sent by the store
    whose id is ``ignore`` (the pool's own) do not count. Raises StoreError
    (without the password) if it cannot connect."""

    def __init__(self, url: str, channel: str, ignore: str) -> None:
        self._session = Session(url)
        self._ignore = ignore.encode()
        options = {} if "connect_timeout" in url else {"connect_timeout": CONNECT_TIMEOUT_S}
        try:
            self._conn = psycopg.connect(url, autocommit=True, **options)  # type: ignore[arg-type]
            self._conn.execute(f"LISTEN {channel}")
        except psycopg.Error as exc:
            raise self._session.error(exc, "cannot listen for new tasks") from None

    def fileno(self) -> int:
        """The socket to watch for readability."""
        return self._conn.pgconn.socket

    def drain(self) -> bool:
        """Read what arrived without blocking; True if another store's notice
        was among it. Raises StoreError once the connection is lost."""
        pgconn = self._conn.pgconn
        try:
            pgconn.consume_input()
        except psycopg.Error as exc:
            raise self._session.error(exc, "lost the LISTEN connection") from None
        woke = False
        while (notice := pgconn.notifies()) is not None:
            woke = woke or notice.extra != self._ignore
        return woke

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with contextlib.suppress(psycopg.Error):
            self._conn.close()

