"""An executor as the pool sees it: a small state machine and its pipes.

States and legal transitions::

    starting --spawned--> idle <--> busy
    starting | idle | busy --stop--> stopping
    any --exit--> dead

An executor may run several tasks at once (``async def`` tasks, up to their
concurrency). ``running`` holds those that started (``STARTED`` heard), by
id; ``waiting`` the descriptors written to its pipe that have not started,
in pipe order (prefetch): they start in that order, and never started if
the executor dies. ``busy`` means something runs or waits.
"""

from __future__ import annotations

import enum
import time
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
    concurrency: int = 1  # how many tasks its executor may run beside it, itself included
    solo: bool = False  # runs alone: it shared an executor that crashed (quarantine)
    is_async: bool = False  # runs on the executor's loop (STARTED says): CANCEL can stop it
    cancel_sent_at: float | None = None  # CANCEL written at (time.time())
    late: bool = False  # passed its hard time limit: the executor is killed for it
    size: int = 0  # bytes of its RUN frame (what it takes of the pipe while it waits)


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
    running: dict[str, Inflight] = field(default_factory=dict)
    waiting: deque[Inflight] = field(default_factory=deque)
    control_fd: int = -1  # the pool's end of the executor's control pipe (CANCEL)
    last_busy: float = field(default_factory=time.monotonic)  # a task handed out or ended
    last_progress: float = field(default_factory=time.monotonic)  # a task started or ended
    exit_status: str | None = None
    eof: bool = False
    kill_reason: str | None = None  # why the pool killed it: timeout, cancelled, shutdown
    recycle: str | None = None  # why it asked to leave: recycled, memory, timeout
    hold: bool = False  # no prefetch beyond what can start (set when tasks waited too long)

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
    def count(self) -> int:
        """Tasks handed to this executor that have not ended (running or waiting)."""
        return len(self.running) + len(self.waiting)

    @property
    def waiting_bytes(self) -> int:
        """Bytes of the RUN frames of the tasks waiting in its pipe."""
        return sum(inf.size for inf in self.waiting)

    def tasks(self) -> list[Inflight]:
        """Every task handed to this executor that has not ended: running, then waiting."""
        return [*self.running.values(), *self.waiting]

    def min_concurrency(self) -> int | None:
        """The lowest concurrency among its tasks (what it may run at once), or
        ``None`` when it has none."""
        return min((t.concurrency for t in self.tasks()), default=None)

    def free(self, default: int) -> int:
        """How many more tasks it could start now: its capacity (the lowest
        concurrency among its tasks; ``default`` when it has none) less those
        running or waiting. 0 for one running a one-at-a-time task."""
        cap = self.min_concurrency()
        return max(0, (default if cap is None else cap) - self.count)
