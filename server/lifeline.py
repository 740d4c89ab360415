"""The HTTP workers' side of the gunicorn master's death (used by ``server.supervision``).

Two pipes, made once by the master before it forks any HTTP worker:

- the *master lifeline*: only the master holds its write end; every HTTP
  worker watches its read end on its event loop. EOF means the master is
  gone, even by SIGKILL, and the worker hears it at once (gunicorn's own
  check of the parent pid, and the parent-death SIGTERM it answers, take
  effect only at its next one-second heartbeat, while the worker goes on
  accepting requests).
- the *workers pipe*: the master and every HTTP worker hold its write end;
  the keeper reads the other end (``--workers-fd``). EOF means no HTTP
  worker can hand off a background call any more, so the keeper may stop
  the pool (``executor.pool.keeper``). Its bound is the keeper's.

When the master is gone, a worker (``MasterWatch.master_gone``):

1. stops taking requests at once: its listening sockets close, and a
   request that still arrives on a kept-alive connection is answered
   ``503`` with ``Retry-After: 1`` (``RequestGate``, checked by offload's
   app), so no background call is handed off after this point;
2. waits for the requests in flight (every request but offload's own
   reads, which hand off nothing: a long poll must not hold the pool up);
3. waits until its outbox has stored its background calls (at most
   ``DRAIN_S``: the pool is still up, it takes milliseconds);
4. closes its end of the workers pipe; gunicorn's graceful stop, already
   under way, then ends the process.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

DRAIN_S = 5.0
"""How long a worker whose master is gone waits for its outbox to be stored."""


class RequestGate:
    """The requests in flight in this HTTP worker, and whether it still takes new ones.

    offload's app calls ``enter``/``leave`` around each request that may
    hand off background calls, and refuses every request once ``closed``.
    """

    def __init__(self) -> None:
        self.closed = False
        self.in_flight = 0
        self._idle: asyncio.Event | None = None

    def enter(self) -> None:
        """A request that may hand off background calls begins."""
        self.in_flight += 1

    def leave(self) -> None:
        """It ended (its calls, if any, are in the outbox)."""
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def idle(self) -> None:
        """Return once no counted request is in flight (on the running loop)."""
        if self.in_flight == 0:
            return
        self._idle = asyncio.Event()
        await self._idle.wait()


class MasterWatch:
    """One HTTP worker's watch on its master (made by ``Supervision.post_worker_init``)."""

    def __init__(self, worker: Any, gate: RequestGate, lifeline_r: int, workers_w: int) -> None:
        self.worker = worker
        self.gate = gate
        self.lifeline_r = lifeline_r
        self.workers_w: int | None = workers_w
        self._task: asyncio.Task[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Watch the master lifeline on ``loop`` (the worker's, not yet running)."""
        loop.add_reader(self.lifeline_r, self._readable, loop)

    def _readable(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            data = os.read(self.lifeline_r, 64)
        except OSError:
            data = b""
        if data:
            return  # never written; only EOF means anything
        loop.remove_reader(self.lifeline_r)
        self.master_gone(loop)

    def master_gone(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop taking requests now; release the pool once drained (module docstring)."""
        self.worker.log.warning("offload: the gunicorn master is gone: this HTTP worker takes "
                                "no more requests, stores its background calls, then exits")
        self.gate.closed = True
        self.worker.alive = False  # gunicorn: Connection: close, then a graceful stop
        for server in getattr(self.worker, "servers", ()):
            server.close()  # stop accepting now, not at the next heartbeat
        self._task = loop.create_task(self._release(), name="offload-master-gone")

    async def _release(self) -> None:
        from executor.client.shared import drain_background  # the worker's, after fork

        try:
            await self.gate.idle()
            await drain_background(DRAIN_S)
        finally:
            self.release()

    def release(self) -> None:
        """Close this worker's end of the workers pipe (idempotent)."""
        fd, self.workers_w = self.workers_w, None
        if fd is not None:
            os.close(fd)
