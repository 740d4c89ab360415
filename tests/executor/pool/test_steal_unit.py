"""Taking waiting tasks back from an executor's pipe (real pipes, no
processes; the pool behind the ``HandoutOwner`` seam is a recorder)."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

from config import Settings
from executor.pool.handout import Handout
from executor.pool.pipes import Pipes
from executor.pool.slots import Inflight, Slot
from executor.wire.protocol import FrameReader, FrameType, encode


class Owner:
    """Records what the hand-out tells the pool."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.metrics = SimpleNamespace()
        self.stopping = False
        self.released: list[str] = []

    def release(self, inf: Inflight) -> None:
        self.released.append(inf.id)

    def complete(self, *args: Any) -> None: ...
    def started(self, inf: Inflight) -> None: ...
    def schedule_turn(self) -> None: ...


def test_steal_takes_back_run_frames_and_leaves_a_stop_in_the_pipe() -> None:
    task_r, task_w = os.pipe()
    steal_fd = os.open(f"/proc/self/fd/{task_r}", os.O_RDONLY | os.O_NONBLOCK)
    owner = Owner()
    handout = Handout(owner, SimpleNamespace(slots={}, manifest={}), Pipes())
    slot = Slot(1, 1, task_w, -1, steal_fd, FrameReader())
    try:
        for i in range(2):
            slot.waiting.append(Inflight(f"t{i}", "k", 1, 0, 1.0, 0.0, 0.0))
        # What an executor not yet forked finds: two tasks, then the STOP of a reload.
        os.write(task_w, encode(FrameType.RUN, {"id": "t0"}) + encode(FrameType.RUN, {"id": "t1"})
                 + encode(FrameType.STOP, {}))
        handout.steal(slot)
        assert owner.released == ["t0", "t1"] and not slot.waiting and slot.hold
        os.set_blocking(task_r, False)
        left = list(FrameReader().feed(os.read(task_r, 65536)))
        assert left == [(FrameType.STOP, {})]  # the executor still learns to leave
    finally:
        for fd in (task_r, task_w, steal_fd):
            os.close(fd)


def test_steal_takes_back_frames_split_between_the_pipe_and_the_out_buffer() -> None:
    """Frames that did not fit in the pipe wait in ``Pipes``' out-buffer, one
    of them split across the two: all come back, none is left behind."""
    import asyncio

    task_r, task_w = os.pipe()
    os.set_blocking(task_w, False)
    steal_fd = os.open(f"/proc/self/fd/{task_r}", os.O_RDONLY | os.O_NONBLOCK)
    owner = Owner()
    pipes = Pipes()
    handout = Handout(owner, SimpleNamespace(slots={}, manifest={}), pipes)
    slot = Slot(1, 1, task_w, -1, steal_fd, FrameReader())
    ids = [f"t{i}" for i in range(40)]

    async def run() -> None:
        for task_id in ids:  # 40 x 3 KB: more than a 64 KiB pipe holds
            slot.waiting.append(Inflight(task_id, "k", 1, 0, 1.0, 0.0, 0.0))
            pipes.write(slot, encode(FrameType.RUN, {"id": task_id, "payload": b"x" * 3000}))
        assert task_w in pipes._outbufs  # the rest waits here
        handout.steal(slot)
        assert task_w not in pipes._outbufs  # and is not written later

    try:
        asyncio.run(run())
        assert owner.released == ids and not slot.waiting
        os.set_blocking(task_r, False)
        try:
            rest = os.read(task_r, 65536)
        except BlockingIOError:
            rest = b""
        assert rest == b""  # nothing left for the executor to run
    finally:
        for fd in (task_r, task_w, steal_fd):
            os.close(fd)
