"""The template: imports task code once, then forks executors on request.

Run by the pool as ``python -m executor.worker.template FD MODULES_JSON`` with one
end of a ``SOCK_SEQPACKET`` socket pair on ``FD`` (one frame per message). It never
starts an event loop or a thread, so ``fork`` is safe and executors share
the imported code copy-on-write.

Control messages (``executor.wire.protocol`` frames):

* template -> pool ``MANIFEST`` ``{"kinds": {kind: options}, "pid": int}``
  once, after the task modules imported; or ``{"error": str}`` and exit 1.
  ``options`` are the kind's ``@task`` options (``max_retries``,
  ``timeout_s``, ``retry_backoff_s``, ``retry_backoff_max_s``; ``None`` =
  the setting) and ``params``: its function's parameters,
  ``[[name, kind, has_default], ...]`` with ``kind`` 0 positional-only,
  1 positional-or-keyword, 2 ``*args``, 3 keyword-only, 4 ``**kwargs``
  (``executor.wire.callcheck.params_of``), or ``None`` if its signature cannot be read.
  The pool checks submitted calls against ``params`` (``executor.wire.callcheck``)
  without importing task code.
* pool -> template ``SPAWN`` ``{"slot": int, "limits": map}`` with three fds
  attached (SCM_RIGHTS): the executor's task pipe read end, result pipe
  write end and control pipe read end (``CANCEL``). The template forks; the
  child puts itself in its own process group and runs ``aio.run_executor``,
  which makes the executor's event loop (never the template's).
* template -> pool ``SPAWNED`` ``{"slot": int, "pid": int}``.
* template -> pool ``EXITED`` ``{"pid": int, "status": str}`` for every child
  it reaps: ``"exit 0"``, ``"exit 3"``, ``"SIGSEGV"``, ...
* pool -> template ``DRAIN`` ``{}``: fork no more; exit once no child is left.

If the pool goes away (EOF), the template kills its executors' process
groups and exits: their tasks are recovered by the next pool.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import selectors
import signal
import socket
import sys
from typing import Any

from config.settings import MAX_RETRIES, MAX_TIMEOUT_S, MIN_TIMEOUT_S
from executor.wire.protocol import FrameType, ProtocolError, decode_body, encode, parse_header
from executor.wire.registry import Registry
from executor.worker.aio import run_executor
from executor.worker.limits import Limits

_MAX_MSG = 1 << 20


def describe_status(status: int) -> str:
    """``"exit N"`` or the signal's name, from a ``waitpid`` status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return signal.Signals(sig).name
        except ValueError:
            return f"signal {sig}"
    return f"exit {os.WEXITSTATUS(status)}"


def send(sock: socket.socket, ftype: FrameType, body: dict[str, Any],
         fds: list[int] | None = None) -> None:
    """Send one control frame (with ``fds`` attached, if any)."""
    data = encode(ftype, body)
    if fds:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.sendall(data)


def recv(sock: socket.socket) -> tuple[FrameType, dict[str, Any], list[int]] | None:
    """Receive one control frame and its fds; ``None`` on EOF."""
    data, fds, _, _ = socket.recv_fds(sock, _MAX_MSG, 4)
    if not data:
        return None
    ftype, length = parse_header(data[:8], _MAX_MSG)
    if len(data) != 8 + length:
        raise ProtocolError("malformed_frame", "control frame length mismatch")
    return ftype, decode_body(data[8:]), list(fds)


class Template:
    """The template's state: its children and whether it is draining."""

    def __init__(self, sock: socket.socket, registry: Registry) -> None:
        self.sock = sock
        self.registry = registry
        self.children: set[int] = set()
        self.draining = False

    def spawn(self, body: dict[str, Any], fds: list[int]) -> None:
        """Fork one executor on the pipe ends ``fds`` = [task read, result write,
        control read]."""
        rfd, wfd, cfd = fds
        limits = Limits(**body.get("limits", {}))
        pid = os.fork()
        if pid == 0:  # the executor
            try:
                os.setpgid(0, 0)
                self.sock.close()
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                run_executor(rfd, wfd, cfd, self.registry, limits)
            finally:
                os._exit(70)
        self.children.add(pid)
        for fd in fds:
            os.close(fd)
        send(self.sock, FrameType.SPAWNED, {"slot": body["slot"], "pid": pid})

    def reap(self) -> None:
        """Collect every exited child and report it."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            self.children.discard(pid)
            send(self.sock, FrameType.EXITED, {"pid": pid, "status": describe_status(status)})

    def kill_all(self) -> None:
        """Kill every executor's process group (the pool is gone)."""
        for pid in self.children:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)

    def serve(self) -> int:
        """Handle control messages until the pool leaves or draining ends."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        sel.register(wake_r, selectors.EVENT_READ)
        while True:
            for key, _ in sel.select():
                if key.fileobj == wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                    continue
                msg = recv(self.sock)
                if msg is None:
                    self.kill_all()
                    return 0
                ftype, body, fds = msg
                if ftype == FrameType.SPAWN and not self.draining and len(fds) == 3:
                    self.spawn(body, fds)
                elif ftype == FrameType.DRAIN:
                    self.draining = True
                else:
                    for fd in fds:
                        os.close(fd)
            self.reap()
            if self.draining and not self.children:
                return 0


def main() -> int:
    """Entry point: ``python -m executor.worker.template FD MODULES_JSON``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sock = socket.socket(fileno=int(sys.argv[1]))
    modules = json.loads(sys.argv[2]) if len(sys.argv) > 2 else []
    try:
        registry = Registry.from_modules(modules)
        # A kind may not go where its setting cannot (config.settings' bounds).
        registry.check_options(min_timeout_s=MIN_TIMEOUT_S, max_timeout_s=MAX_TIMEOUT_S,
                               max_retries=MAX_RETRIES)
    except Exception as exc:  # report any import failure to the pool, then exit
        send(sock, FrameType.MANIFEST, {"error": f"{type(exc).__name__}: {exc}",
                                        "pid": os.getpid()})
        return 1
    send(sock, FrameType.MANIFEST, {"kinds": registry.manifest(), "pid": os.getpid()})
    return Template(sock, registry).serve()


if __name__ == "__main__":
    sys.exit(main())
