"""How an executor takes the tasks the pool writes to its pipe: one frame at a time.

Prefetch: the pool may write more tasks than can start. The executor takes
one frame at a time (``take_frame``), holding ``flock`` on its end of the
pipe, and only when it can start one more task; the pool holds another open
file description of the same pipe and may take a waiting frame back under
the same lock (the pool's ``Handout.steal``), so a task never waits long
behind a slow one, and never runs twice.

Frame size: the pool kills an executor whose frame is over
``max_frame_bytes`` (a broken protocol), so nothing an executor writes may
be: ``executor.worker.doneframe`` builds every ``DONE`` frame within the
limit. What it reads is checked against the same limit here, by the header,
before the body is read.
"""

from __future__ import annotations

import fcntl
import os
import select
from typing import Any

from executor.wire.protocol import HEADER_SIZE, FrameType, decode_body, parse_header

EMPTY = (FrameType.STOP, {"empty": True})  # take_frame: nothing waits in the pipe


def take_frame(fd: int, max_frame_bytes: int) -> tuple[FrameType, dict[str, Any]] | None:
    """Take the next frame from the non-blocking pipe ``fd``: the frame, ``EMPTY``
    (compare with ``is``) if none waits, or ``None`` on EOF.

    Takes exactly one frame, under ``flock``: a frame the pool took back in
    the meantime is simply not there any more. A frame begun is read to its
    end (the pool writes whole frames; the rest is at most a moment away).
    Raises ``ProtocolError`` for a frame that breaks the format (a bad
    header, a body over ``max_frame_bytes`` or not a map).
    """
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        try:
            header = os.read(fd, HEADER_SIZE)
        except BlockingIOError:
            return EMPTY  # nothing there, or taken back by the pool
        if not header:
            return None
        try:
            header += _read_exact(fd, HEADER_SIZE - len(header))
            ftype, length = parse_header(header, max_frame_bytes)
            return ftype, decode_body(_read_exact(fd, length))
        except EOFError:
            return None
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _read_exact(fd: int, n: int) -> bytes:
    """``n`` bytes from the non-blocking ``fd``, waiting for the rest of a
    frame begun; raises ``EOFError`` if the pipe ends first."""
    out = bytearray()
    while len(out) < n:
        try:
            chunk = os.read(fd, n - len(out))
        except BlockingIOError:
            select.select([fd], [], [])
            continue
        if not chunk:
            raise EOFError
        out += chunk
    return bytes(out)
