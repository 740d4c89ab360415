"""offload's wire format: one framing for the pool socket and executor pipes.

Frame layout (all integers big-endian)::

    offset  size  field
    0       2     magic    b"OF"
    2       1     version  1
    3       1     type     a FrameType value
    4       4     length   body size in bytes, 0 <= length <= max_frame_bytes
    8       len   body     one msgpack object (always a map)

A reader validates the 8-byte header *before* it reads or buffers the body:
wrong magic or version, an unknown type, or a length above the reader's
``max_frame_bytes`` raise ``ProtocolError`` and the connection is answered
(where it can be) and closed. The body is unpacked with msgpack's strict
limits (no string/array/map longer than the body itself, nesting bounded by
msgpack's own stack limit) and must be a map.

Frame types and bodies:

* ``REQUEST`` (client -> pool) ``{"id": int, "op": str, "args": map}``
* ``REPLY`` (pool -> client) ``{"id": int, "ok": True, "result": any}`` or
  ``{"id": int, "ok": False, "error": {"code": str, "message": str}}``.
  Replies may come back in any order; ``id`` pairs them with requests.
* ``RUN`` (pool -> executor) a task descriptor map (see ``executor.task``).
* ``STARTED`` (executor -> pool) ``{"id": str, "at": float, "async": bool,
  "concurrency": int}``: the task began; ``async`` says whether it runs on
  the executor's event loop (a forced cancel then uses ``CANCEL``), and
  ``concurrency`` is how many tasks its kind allows at once in one executor
  (1 for ``def`` tasks), which the pool remembers for kinds it has no
  manifest entry for (``BackgroundTasks`` functions without ``@task``).
* ``PROGRESS`` (executor -> pool) ``{"id": str, "value": float, "message": str}``
* ``DONE`` (executor -> pool) ``{"id", "ok", "result": bytes | None,
  "error": {"reason", "message", "traceback"} | None, "retry_delay_s",
  "rss_mb", "recycle": str | None}``. Several tasks may run at once in one
  executor, so ``DONE`` frames come in any order; ``STARTED`` frames come in
  the order the ``RUN`` frames were written.
* ``STOP`` (pool -> executor) ``{}``: finish what is running, then exit 0.
* ``CANCEL`` (pool -> executor, on the executor's control pipe) ``{"id": str}``:
  cancel that running ``async def`` task alone (``asyncio`` cancellation
  inside it); its ``DONE`` follows. An unknown or finished id is ignored.
* ``SPAWN`` / ``SPAWNED`` / ``EXITED`` / ``MANIFEST`` / ``DRAIN``: the pool's
  control channel to the template (see ``executor.worker.template``).

No pickle, ever: only msgpack, with the extension types of ``executor.wire.codec``
inside task arguments and results (carried as opaque ``bytes`` here).
"""

from __future__ import annotations

import enum
import struct
import threading
from collections.abc import Iterator
from typing import Any

import msgpack

MAGIC = b"OF"
VERSION = 1
HEADER = struct.Struct("!2sBBI")
HEADER_SIZE = HEADER.size
DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024


class FrameType(enum.IntEnum):
    """The kind of a frame; the value is the header's type byte."""

    REQUEST = 1
    REPLY = 2
    RUN = 3
    STARTED = 4
    PROGRESS = 5
    DONE = 6
    STOP = 7
    SPAWN = 8
    SPAWNED = 9
    EXITED = 10
    MANIFEST = 11
    DRAIN = 12
    CANCEL = 13


_TYPES = frozenset(int(t) for t in FrameType)
_BY_VALUE = {int(t): t for t in FrameType}  # FrameType(n) is an enum call, ~1 us
# One Packer per thread, reused: msgpack.packb builds one per call. A Packer
# forgets a half-packed object when pack() raises.
_local = threading.local()


def _packer() -> msgpack.Packer:
    try:
        packer: msgpack.Packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    return packer


class ProtocolError(Exception):
    """A frame broke the format. ``code`` is the wire error code to reply with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def encode(ftype: FrameType, body: dict[str, Any]) -> bytes:
    """Return one complete frame (header + msgpack body). The size limit is the
    reader's to enforce; a writer that wants to refuse early compares
    ``len(frame) - HEADER_SIZE`` with its ``max_frame_bytes``."""
    payload = _packer().pack(body)
    return HEADER.pack(MAGIC, VERSION, ftype, len(payload)) + payload


def parse_header(header: bytes, max_frame_bytes: int) -> tuple[FrameType, int]:
    """Validate an 8-byte header and return ``(type, body length)``.

    Raises ``ProtocolError`` before any body is read if the header is wrong.
    """
    magic, version, ftype, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise ProtocolError("malformed_frame", f"bad frame magic {magic!r}; expected {MAGIC!r}")
    if version != VERSION:
        raise ProtocolError(
            "unsupported_version", f"frame version {version} is not supported; expected {VERSION}"
        )
    if ftype not in _TYPES:
        raise ProtocolError("malformed_frame", f"unknown frame type {ftype}")
    if length > max_frame_bytes:
        raise ProtocolError(
            "frame_too_large",
            f"frame of {length} bytes exceeds the limit of {max_frame_bytes} bytes",
        )
    return FrameType(ftype), length


def decode_body(body: bytes) -> dict[str, Any]:
    """Unpack a frame body with strict limits; it must be a msgpack map."""
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ProtocolError("malformed_frame", f"frame body is not valid msgpack: {exc}") from exc
    if not isinstance(obj, dict):
        raise ProtocolError("malformed_frame", "frame body must be a msgpack map")
    return obj


class FrameReader:
    """Incremental frame parser for stream transports (sockets and pipes).

    Feed it bytes as they arrive; iterate the complete frames. After a
    ``ProtocolError`` the stream is unusable and must be closed.
    """

    __slots__ = ("_buf", "_need", "_type", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._type: FrameType | None = None  # set once a header is read ...
        self._need = 0  # ... with its body's length

    def feed(self, data: bytes) -> Iterator[tuple[FrameType, dict[str, Any]]]:
        """Add ``data`` and yield every frame now complete, in order."""
        buf = self._buf
        buf += data
        end = len(buf)
        pos = 0
        try:
            while True:
                ftype = self._type
                if ftype is None:
                    if end - pos < HEADER_SIZE:
                        break
                    # Hot path (three frames per task in the pool): unpack in
                    # place; parse_header only to word a refusal.
                    magic, version, value, length = HEADER.unpack_from(buf, pos)
                    if (magic != MAGIC or version != VERSION or value not in _BY_VALUE
                            or length > self.max_frame_bytes):
                        parse_header(bytes(buf[pos:pos + HEADER_SIZE]), self.max_frame_bytes)
                    pos += HEADER_SIZE
                    ftype = self._type = _BY_VALUE[value]
                    self._need = length
                need = self._need
                if end - pos < need:
                    break
                body = bytes(buf[pos:pos + need])
                pos += need
                self._type = None
                yield ftype, decode_body(body)
        finally:
            del buf[:pos]


def write_all(fd: int, data: bytes) -> None:
    """Blocking write of all of ``data`` to ``fd``."""
    import os

    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
