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
