"""The pool's Unix socket: accepts clients, frames requests, batches replies.

The socket lives in a private 0700 directory, is itself 0600, and every
connection's peer uid (SO_PEERCRED) must be ours. A frame that breaks the
format gets an error reply (id 0) and the connection is closed; the pool
keeps serving everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from config.paths import ensure_private_dir
from executor.protocol import FrameReader, FrameType, ProtocolError, encode

log = logging.getLogger("offload.pool")
Handler = Callable[["ClientConn", int, str, dict[str, Any]], None]


class ClientConn(asyncio.Protocol):
    """One client connection. Replies written in one loop turn go out in one write."""

    def __init__(self, handler: Handler, max_frame_bytes: int) -> None:
        self.handler = handler
        self.reader = FrameReader(max_frame_bytes)
        self.transport: asyncio.Transport | None = None
        self.out: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        if uid != os.getuid():
            log.warning("refused a connection from uid %d", uid)
            self.closed = True
            transport.abort()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        try:
            for ftype, body in self.reader.feed(data):
                req_id = body.get("id")
                if ftype != FrameType.REQUEST or not isinstance(req_id, int):
                    raise ProtocolError("malformed_frame", "expected a REQUEST frame with an id")
                op, args = body.get("op"), body.get("args", {})
                if not isinstance(op, str) or not isinstance(args, dict):
                    self.fail(req_id, "malformed_frame", "REQUEST needs op (str), args (map)")
                    continue
                self.handler(self, req_id, op, args)
        except ProtocolError as exc:
            log.warning("closing a client connection: %s", exc.message)
            self.fail(0, exc.code, exc.message)
            self._flush()
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def reply(self, req_id: int, result: Any) -> None:
        """Queue a success reply."""
        self._queue(encode(FrameType.REPLY, {"id": req_id, "ok": True, "result": result}))

    def fail(self, req_id: int, code: str, message: str, field: str | None = None) -> None:
        """Queue an error reply."""
        err = {"code": code, "message": message, "field": field}
        self._queue(encode(FrameType.REPLY, {"id": req_id, "ok": False, "error": err}))

    def _queue(self, frame: bytes) -> None:
        if self.closed:
            return
        if not self.out:
            asyncio.get_running_loop().call_soon(self._flush)
        self.out.append(frame)

    def _flush(self) -> None:
        if self.out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.out))
        self.out.clear()


async def listen(path: str, handler: Handler, max_frame_bytes: int) -> asyncio.AbstractServer:
    """Start serving on ``path`` (its directory made private; a stale socket removed)."""
    ensure_private_dir(os.path.dirname(path))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    loop = asyncio.get_running_loop()
    old = os.umask(0o177)
    try:
        server = await loop.create_unix_server(lambda: ClientConn(handler, max_frame_bytes), path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return server
