"""An executor as the pool sees it: a small state machine and its pipes.

States and legal transitions::

    starting --spawned--> idle <--> busy
    starting | idle | busy --stop--> stopping
    any --exit--> dead

``inflight`` holds the descriptors written to the executor's pipe, in
order: the first has started (``started_at`` set) or is about to, the rest
wait in the pipe (prefetch) and never started if the executor dies.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from executor.wire.protocol import FrameReader


class ExecutorState(enum.StrEnum):
    """The state of one executor slot."""

    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"
    DEAD = "dead"


_LEGAL = {
    ExecutorState.STARTING: {ExecutorState.IDLE, ExecutorState.BUSY, ExecutorState.STOPPING,
                             ExecutorState.DEAD},
    ExecutorState.IDLE: {ExecutorState.BUSY, ExecutorState.STOPPING, ExecutorState.DEAD},
    ExecutorState.BUSY: {ExecutorState.IDLE, ExecutorState.STOPPING, ExecutorState.DEAD},
    ExecutorState.STOPPING: {ExecutorState.DEAD},
    ExecutorState.DEAD: set(),
}


@dataclass(eq=False)
class Inflight:
    """A task handed to an executor."""

    id: str
    kind: str
    attempts: int
    max_retries: int
    timeout_s: float
    created_at: float
    not_before: float
    started_at: float | None = None
    # The store has ``started_at``: from now on a crash of the pool counts
    # this attempt (``Store.recover``). Set by the turn that wrote it, or by
    # ``Pool.store_start`` before a reply shows the task running.
    start_stored: bool = False
    progress: dict[str, Any] | None = None
    cancelled_by: str | None = None
    token: int | None = None  # the claim's fencing token (shared stores)


@dataclass(eq=False)
class Slot:
    """One executor process and the pool's end of its pipes."""

    slot_id: int
    generation: int
    write_fd: int
    read_fd: int
    steal_fd: int  # our own open file description of the executor's task pipe
    reader: FrameReader
    state: ExecutorState = ExecutorState.STARTING
    pid: int | None = None
    tasks_run: int = 0
    rss_mb: float | None = None  # reported after each task; None before the first
    inflight: deque[Inflight] = field(default_factory=deque)
    exit_status: str | None = None
    eof: bool = False
    kill_reason: str | None = None  # why the pool killed it: timeout, cancelled, shutdown
    recycle: str | None = None  # why it asked to leave: recycled, memory, timeout
    hold: str | None = None  # no prefetch behind this (slow) running task

    def move(self, new: ExecutorState) -> None:
        """Change state; raises ``RuntimeError`` on an illegal transition."""
        if new is self.state:
            return
        if new not in _LEGAL[self.state]:
            raise RuntimeError(f"executor slot {self.slot_id}: illegal {self.state.value} -> "
                               f"{new.value}")
        self.state = new

    @property
    def accepting(self) -> bool:
        """Whether new tasks may be written to this executor."""
        return self.state in (ExecutorState.STARTING, ExecutorState.IDLE, ExecutorState.BUSY)

    @property
    def current(self) -> Inflight | None:
        """The task running now (started), if any."""
        if self.inflight and self.inflight[0].started_at is not None:
            return self.inflight[0]
        return None
