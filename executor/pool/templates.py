"""The pool's handle on a template process (see ``executor.worker.template``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from executor.wire.protocol import FrameType, ProtocolError, decode_body, encode, parse_header

log = logging.getLogger("offload.pool")
OnMessage = Callable[["TemplateProcess", FrameType, dict[str, Any]], None]
_MAX_MSG = 1 << 20


class TemplateProcess:
    """One template: a child process and the pool's end of its control socket.

    ``start`` returns once the template has imported the task modules and
    sent its manifest; it raises ``RuntimeError`` with the template's error
    (e.g. a task module that does not import) otherwise.
    """

    def __init__(self, generation: int, modules: list[str], on_message: OnMessage,
                 on_exit: Callable[[TemplateProcess], None]) -> None:
        self.generation = generation
        self.modules = modules
        self.on_message = on_message
        self.on_exit = on_exit
        self.sock: socket.socket | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.manifest: dict[str, dict[str, Any]] = {}
        self.draining = False
        self._ready: asyncio.Future[dict[str, Any]] | None = None

    async def start(self, timeout_s: float = 120.0) -> None:
        """Spawn the template and wait for its manifest."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "executor.worker.template", str(theirs.fileno()),
             json.dumps(self.modules)],
            pass_fds=(theirs.fileno(),), close_fds=True,
        )
        theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._readable)
        try:
            body = await asyncio.wait_for(self._ready, timeout_s)
        except TimeoutError:
            self.kill()
            raise RuntimeError(f"the template did not load task modules in {timeout_s} s") from None
        if "error" in body:
            self.close()
            raise RuntimeError(f"task modules {self.modules} failed to load: {body['error']}")
        self.manifest = body["kinds"]

    def _readable(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, _MAX_MSG, 4)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            for fd in fds:
                os.close(fd)
            if not data:
                self.close()
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result({"error": "the template exited during start"})
                self.on_exit(self)
                return
            try:
                ftype, length = parse_header(data[:8], _MAX_MSG)
                body = decode_body(data[8:8 + length])
            except ProtocolError as exc:
                log.error("bad control frame from the template: %s", exc.message)
                continue
            if ftype == FrameType.MANIFEST and self._ready is not None:
                if not self._ready.done():
                    self._ready.set_result(body)
                continue
            self.on_message(self, ftype, body)

    def spawn(self, slot_id: int, limits: dict[str, Any], fds: list[int]) -> bool:
        """Ask for an executor on pipe ends ``fds``; False if the template is gone."""
        if self.sock is None or self.draining:
            return False
        data = encode(FrameType.SPAWN, {"slot": slot_id, "limits": limits})
        try:
            self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                        bytes(memoryview(bytearray(_ints(fds)))))])
        except OSError as exc:
            log.error("cannot reach the template: %s", exc)
            return False
        return True

    def drain(self) -> None:
        """Tell the template to fork no more and exit once its executors are gone."""
        self.draining = True
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.send(encode(FrameType.DRAIN, {}))

    def close(self) -> None:
        """Stop listening to the template (it exits on EOF)."""
        if self.sock is not None:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def kill(self) -> None:
        """Kill the template process itself."""
        self.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def reap(self) -> bool:
        """Collect the template's exit status if it exited; True once it has."""
        return self.proc is None or self.proc.poll() is not None


def _ints(fds: list[int]) -> bytes:
    import array

    return array.array("i", fds).tobytes()
