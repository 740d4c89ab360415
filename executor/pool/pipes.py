"""Writing to executors' task pipes without blocking, and reading tasks back.

The pool's loop must never block on an executor: a frame that does not fit
in a pipe waits in a per-pipe buffer, written when the pipe drains. A task
that waits in a pipe behind a slow one can be *read back* (``read_back``),
under the pipe's ``flock``, which the executor holds while it takes a frame.
"""

from __future__ import annotations

import asyncio
import fcntl
import os

from executor.pool.slots import Slot


class Pipes:
    """Out-buffers of the task pipes the pool writes to (one loop's)."""

    def __init__(self) -> None:
        self._outbufs: dict[int, bytearray] = {}

    def write(self, slot: Slot, data: bytes) -> None:
        """Write ``data`` to ``slot``'s task pipe now, or as soon as it has room.

        Never blocks. If the executor is gone the data is dropped: its EOF
        hands its tasks back."""
        buf = self._outbufs.get(slot.write_fd)
        if buf is not None:
            buf += data
            return
        try:
            n = os.write(slot.write_fd, data)
        except BlockingIOError:
            n = 0
        except OSError:
            return
        if n == len(data):
            return
        self._outbufs[slot.write_fd] = bytearray(data[n:])
        asyncio.get_running_loop().add_writer(slot.write_fd, self._writable, slot)

    def _writable(self, slot: Slot) -> None:
        buf = self._outbufs[slot.write_fd]
        try:
            n = os.write(slot.write_fd, buf)
        except BlockingIOError:
            return
        except OSError:
            n = len(buf)
        del buf[:n]
        if not buf:
            del self._outbufs[slot.write_fd]
            asyncio.get_running_loop().remove_writer(slot.write_fd)

    def forget(self, slot: Slot) -> None:
        """Drop what still waits for ``slot``'s pipe (its executor is gone)."""
        if self._outbufs.pop(slot.write_fd, None) is not None:
            asyncio.get_running_loop().remove_writer(slot.write_fd)

    def read_back(self, slot: Slot) -> bytes | None:
        """Everything not yet taken by ``slot``'s executor, now out of its task
        pipe and of the buffer here: whole frames, in order. ``None`` if that
        cannot be done atomically right now (the executor is taking a frame,
        or has gone): try later.

        Under the pipe's ``flock`` the pipe starts at a frame boundary, and
        what the pipe holds continues in this buffer, so the two together
        are whole frames even when a frame was split between them (tasks
        with large arguments fill a 64 KiB pipe with a few frames)."""
        if slot.eof:
            return None
        try:
            fcntl.flock(slot.steal_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        data = bytearray()
        try:
            while True:
                try:
                    chunk = os.read(slot.steal_fd, 262144)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                data += chunk
            buffered = self._outbufs.get(slot.write_fd)
            if buffered is not None:
                data += buffered
                self.forget(slot)
        finally:
            fcntl.flock(slot.steal_fd, fcntl.LOCK_UN)
        return bytes(data)
