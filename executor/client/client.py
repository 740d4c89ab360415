"""The pool's client: one persistent, pipelined connection over the Unix socket.

HTTP workers (and tests, benches, ``BackgroundTasks``) hold one
``PoolClient`` per process. Any number of coroutines may ``call`` at once:
requests written in the same loop turn go out in one ``write``, replies are
matched by request id whatever their order.

Each new connection's peer must run as our own uid (``SO_PEERCRED``, checked
once per connection): a socket put in the pool's place by another user is
refused before any request is written to it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

from executor.wire.errors import PoolError, PoolUnavailable
from executor.wire.peercred import peer_uid
from executor.wire.protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    HEADER_SIZE,
    FrameReader,
    FrameType,
    ProtocolError,
    encode,
)


class _Expired(Exception):
    """A call's timer went off before the pool answered."""


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(_Expired())


class _Conn(asyncio.Protocol):
    def __init__(self, max_frame_bytes: int) -> None:
        self.reader = FrameReader(max_frame_bytes)
        self.transport: asyncio.Transport | None = None
        self.waiters: dict[int, asyncio.Future[Any]] = {}
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            for ftype, body in self.reader.feed(data):
                if ftype != FrameType.REPLY:
                    continue
                fut = self.waiters.pop(body.get("id", -1), None)
                if fut is None or fut.done():
                    continue
                if body.get("ok"):
                    fut.set_result(body.get("result"))
                else:
                    err = body.get("error") or {}
                    fut.set_exception(PoolError(str(err.get("code", "error")),
                                                str(err.get("message", "")), err.get("field")))
        except ProtocolError as exc:
            self._fail(PoolUnavailable(f"bad reply from the pool: {exc.message}"))
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(PoolUnavailable("connection to the pool was lost"))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        waiters, self.waiters = self.waiters, {}
        for fut in waiters.values():
            if not fut.done():
                fut.set_exception(exc)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.out and self.transport is not None and not self.closed:
            data = b"".join(self.out)
            self.out.clear()
            self.transport.write(data)


class PoolClient:
    """Async client of the pool socket at ``path``.

    ``call`` raises ``PoolUnavailable`` when the pool cannot be reached
    (it reconnects on the next call), also when the process listening on
    ``path`` runs as another uid, and ``PoolError`` for an error reply.
    """

    def __init__(self, path: str, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 connect_timeout_s: float = 2.0) -> None:
        self.path = path
        self.max_frame_bytes = max_frame_bytes
        self.connect_timeout_s = connect_timeout_s
        self._conn: _Conn | None = None
        self._ids = itertools.count(1)
        self._lock: asyncio.Lock | None = None

    async def _connection(self) -> _Conn:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            conn = self._conn
            if conn is not None and not conn.closed:
                return conn
            loop = asyncio.get_running_loop()
            try:
                transport, proto = await asyncio.wait_for(
                    loop.create_unix_connection(lambda: _Conn(self.max_frame_bytes), self.path),
                    self.connect_timeout_s,
                )
            except (TimeoutError, OSError) as exc:
                raise PoolUnavailable(f"cannot reach the pool at {self.path}: {exc}") from exc
            self._check_peer(transport)
            self._conn = proto
            return proto

    def _check_peer(self, transport: asyncio.Transport) -> None:
        """Abort the new connection and raise ``PoolUnavailable`` unless the
        process listening on ``path`` runs as our uid."""
        try:
            uid = peer_uid(transport.get_extra_info("socket"))
        except OSError as exc:
            transport.abort()
            raise PoolUnavailable(f"cannot check who listens on {self.path}: {exc}") from exc
        if uid != os.getuid():
            transport.abort()
            raise PoolUnavailable(
                f"refused the pool socket {self.path}: the process listening on it runs as "
                f"uid {uid}, not as us (uid {os.getuid()}), so nothing was sent to it; another "
                f"user may have put it there: check who owns {os.path.dirname(self.path)}, "
                "or set run_dir (OFFLOAD_RUN_DIR) to a private directory")

    async def call(self, op: str, args: dict[str, Any] | None = None,
                   timeout_s: float | None = None) -> Any:
        """Send one request and return the pool's result.

        The request is encoded before anything else: one that cannot be
        (``args`` holding a string with a lone surrogate, an integer past
        64 bits...) raises msgpack's ``ValueError``/``TypeError``/
        ``OverflowError`` with nothing sent, no connection made and nothing
        left waiting. A call that ends any other way than with the pool's
        answer (timeout, cancellation) stops waiting for it too.
        """
        req_id = next(self._ids)
        frame = encode(FrameType.REQUEST, {"id": req_id, "op": op, "args": args or {}})
        if len(frame) - HEADER_SIZE > self.max_frame_bytes:
            raise PoolError("frame_too_large",
                            f"request of {len(frame)} bytes exceeds {self.max_frame_bytes}")
        conn = await self._connection()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        # Registered only now that the frame exists, and with nothing that can
        # raise between here and the ``try`` that unregisters it.
        conn.waiters[req_id] = fut
        conn.out.append(frame)
        if not conn.flush_scheduled:
            conn.flush_scheduled = True
            loop.call_soon(conn.flush)
        # A timer on the future, not asyncio.wait_for (which wraps it in a
        # task and a second future: a tenth of an HTTP worker's CPU per submit).
        timer = None if timeout_s is None else loop.call_later(timeout_s, _expire, fut)
        try:
            return await fut
        except _Expired:
            raise PoolUnavailable(f"the pool did not answer {op!r} in {timeout_s} s") from None
        finally:
            if timer is not None:
                timer.cancel()
            # Answered: already popped by data_received. Otherwise (timeout,
            # cancelled caller) forget it, so an answer that never comes
            # holds nothing until the connection closes.
            conn.waiters.pop(req_id, None)

    async def close(self) -> None:
        """Close the connection; pending calls fail with ``PoolUnavailable``."""
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.close()
