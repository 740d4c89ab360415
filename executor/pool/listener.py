"""The pool's Unix socket: accepts clients, frames requests, batches replies.

The socket lives in a private 0700 directory, is itself 0600, and every
connection's peer uid (SO_PEERCRED) must be ours. A frame that breaks the
format gets an error reply (id 0) and the connection is closed; the pool
keeps serving everyone else.

Replies obey the same ``max_frame_bytes`` as requests, since the client's
reader refuses a larger frame by dropping the whole connection, and with it
every request in flight on it. A reply that would be larger is replaced by
a ``frame_too_large`` error for that one request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from config.paths import ensure_private_dir
from executor.wire.peercred import peer_uid
from executor.wire.protocol import HEADER_SIZE, FrameReader, FrameType, ProtocolError, encode

log = logging.getLogger("offload.pool")
Handler = Callable[["ClientConn", int, str, dict[str, Any]], None]


class ClientConn(asyncio.Protocol):
    """One client connection. Replies written in one loop turn go out in one write."""

    def __init__(self, handler: Handler, max_frame_bytes: int) -> None:
        self.handler = handler
        self.max_frame_bytes = max_frame_bytes
        self.reader = FrameReader(max_frame_bytes)
        # The op of each request not yet answered, to word a refused reply.
        self.ops: dict[int, str] = {}
        self.transport: asyncio.Transport | None = None
        self.out: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        uid = peer_uid(transport.get_extra_info("socket"))
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
                self.ops[req_id] = op
                self.handler(self, req_id, op, args)
        except ProtocolError as exc:
            log.warning("closing a client connection: %s", exc.message)
            self.fail(0, exc.code, exc.message)
            self._flush()
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def reply(self, req_id: int, result: Any) -> None:
        """Queue a success reply, or a ``frame_too_large`` error for this request
        alone if the reply would be over ``max_frame_bytes``."""
        op = self.ops.pop(req_id, "?")
        frame = encode(FrameType.REPLY, {"id": req_id, "ok": True, "result": result})
        size = len(frame) - HEADER_SIZE
        if size > self.max_frame_bytes:
            log.warning("the reply to %s (request %d) is %d bytes, over max_frame_bytes (%d): "
                        "answered frame_too_large instead", op, req_id, size,
                        self.max_frame_bytes)
            message, field = self._too_large(op, result, size)
            frame = _error_frame(req_id, "frame_too_large", message, field)
        self._queue(frame)

    def fail(self, req_id: int, code: str, message: str, field: str | None = None) -> None:
        """Queue an error reply. A message too long for a frame is cut (its start
        kept): an error must reach its caller."""
        self.ops.pop(req_id, None)
        frame = _error_frame(req_id, code, message, field)
        if len(frame) - HEADER_SIZE > self.max_frame_bytes:
            keep = self.max_frame_bytes // 16  # characters: a quarter of the frame in UTF-8
            frame = _error_frame(req_id, code, f"{message[:keep]} ... ({len(message)} "
                                 f"characters, cut)", field and field[:keep])
        self._queue(frame)

    def _too_large(self, op: str, result: Any, size: int) -> tuple[str, str | None]:
        """The message and field of a ``frame_too_large`` error replacing a reply
        of ``size`` bytes to ``op``."""
        over = f"{size} bytes, over max_frame_bytes ({self.max_frame_bytes})"
        tasks = result.get("tasks") if isinstance(result, dict) else None
        if op == "list" and isinstance(tasks, list):
            return (f"this page of {len(tasks)} records is {over}; ask for a smaller limit",
                    "limit")
        if op == "submit" and isinstance(tasks, list):
            return (f"the {len(tasks)} tasks were stored, but the reply listing them is "
                    f"{over}; submit fewer tasks per request (or ask for reply 'ids')", None)
        return (f"the reply to {op!r} is {over}; keep max_result_bytes at most half of "
                f"max_frame_bytes, or raise max_frame_bytes to read it", None)

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


def _error_frame(req_id: int, code: str, message: str, field: str | None) -> bytes:
    err = {"code": code, "message": message, "field": field}
    return encode(FrameType.REPLY, {"id": req_id, "ok": False, "error": err})


async def listen(path: str, handler: Handler, max_frame_bytes: int) -> asyncio.AbstractServer:
    """Start serving on ``path`` (its directory made private; a stale socket
    removed). Raises ``RuntimeError`` if a live pool already listens there:
    its socket is not taken from it; ``config.paths.RunDirError`` (a
    ``ConfigError``) if the directory is unsafe (see ``ensure_private_dir``)."""
    ensure_private_dir(os.path.dirname(path))
    if _answers(path):
        raise RuntimeError(f"another pool is listening on {path}; it keeps its socket "
                           "(one pool per run_dir)")
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


def _answers(path: str) -> bool:
    """Whether something accepts connections on the Unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:  # missing, refused (stale), not a socket
            return False
    return True
