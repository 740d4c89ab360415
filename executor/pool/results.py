"""What executors say, and how each one ends: the pool's reading of their
result pipes.

Each executor writes ``STARTED``, ``PROGRESS`` and ``DONE`` frames to its
result pipe; the ``ResultReader`` turns them into calls on the pool (its
``ResultsOwner``). An executor that breaks the protocol is killed.

The pipe's EOF is how the pool learns that an executor ended, at once: the
tasks that only waited in its pipe never started and go back to pending
(attempt not counted), and a replacement is started. Once the exit status
is known too (from the template that forked it, within ``STATUS_WAIT_S``)
the executor is buried: the tasks it was running are charged as
``executor.pool.charges`` decides, and after a crash what is left of its
process group is killed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Mapping
from typing import Any, Protocol

from config import Settings
from executor.pool import charges
from executor.pool.charges import Charge
from executor.pool.handout import Handout
from executor.pool.pipes import Pipes
from executor.pool.slots import ExecutorState, Inflight, Slot
from executor.wire.protocol import FrameType, ProtocolError
from metrics import PoolMetrics

log = logging.getLogger("offload.pool")

STATUS_WAIT_S = 1.0  # how long a dead executor's exit status may lag its EOF
_RESTART_REASONS = {"crash", "timeout", "memory", "recycled", "reload", "killed"}


class ResultsOwner(Protocol):
    """What reading the executors needs from the pool."""

    @property
    def settings(self) -> Settings:
        """The current settings (``kill_grace_s``, for a timeout's message)."""

    @property
    def metrics(self) -> PoolMetrics:
        """Queue times and executor restarts are counted here."""

    def complete(self, inf: Inflight, ok: bool, result: bytes | None,
                 error: dict[str, Any] | None, retry_delay_s: float | None,
                 retryable: bool) -> None:
        """A started task ended (or its executor did)."""

    def release(self, inf: Inflight) -> None:
        """A task that never started goes back to pending, attempt not counted."""

    def started(self, inf: Inflight) -> None:
        """A handed-out task has started (``inf.started_at`` is set)."""

    def schedule_turn(self) -> None:
        """Something changed: run the end-of-turn work (commit, dispatch) soon."""


class ExecutorControl(Protocol):
    """What reading the executors needs of the executors' side (the ``Fleet``)."""

    @property
    def manifest(self) -> Mapping[str, Mapping[str, Any]]:
        """Registered kinds and their options."""

    def top_up(self) -> None:
        """Start executors up to the settings' number."""

    def kill(self, slot: Slot, reason: str) -> None:
        """Kill ``slot``'s executor and its process group."""

    def signal(self, slot: Slot, sig: int, group: bool) -> None:
        """Send ``sig`` to ``slot``'s executor (``group``: its process group)."""

    def remove(self, slot: Slot) -> None:
        """Forget the buried executor of ``slot``."""


class ResultReader:
    """Reads every executor's result pipe (``readable`` is the loop's reader
    callback) and buries executors once they have ended."""

    def __init__(self, owner: ResultsOwner, executors: ExecutorControl, handout: Handout,
                 pipes: Pipes) -> None:
        self.owner = owner
        self.executors = executors
        self.handout = handout
        self.pipes = pipes

    def readable(self, slot: Slot) -> None:
        """``slot``'s result pipe has data, or its EOF."""
        try:
            data = os.read(slot.read_fd, 262144)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._on_eof(slot)
            return
        try:
            for ftype, body in slot.reader.feed(data):
                if ftype == FrameType.STARTED:
                    self._on_started(slot, body)
                elif ftype == FrameType.PROGRESS:
                    entry = self.handout.inflight.get(body.get("id", ""))
                    if entry is not None:
                        entry[1].progress = {"value": body.get("value"),
                                             "message": body.get("message", "")}
                elif ftype == FrameType.DONE:
                    self._on_done(slot, body)
        except (ProtocolError, KeyError, IndexError) as exc:
            log.error("executor %s broke the protocol (%s): killing it", slot.pid, exc)
            self.executors.kill(slot, "crash")

    def _on_started(self, slot: Slot, body: dict[str, Any]) -> None:
        inf = slot.waiting[0]
        if inf.id != body["id"]:
            raise ProtocolError("malformed_frame", f"STARTED for {body['id']}, expected {inf.id}")
        slot.waiting.popleft()
        slot.running[inf.id] = inf
        slot.last_progress = time.monotonic()
        inf.started_at = time.time()
        inf.is_async = bool(body.get("async"))
        self.handout.concurrency.learn(inf.kind, self.executors.manifest,
                                       body.get("concurrency"))
        self.owner.started(inf)
        if slot.state is ExecutorState.IDLE:
            slot.move(ExecutorState.BUSY)
        if inf.cancelled_by is not None:  # cancelled with force while it waited in the pipe
            self.handout.stop_cancelled(slot, inf)
        self.owner.metrics.observe_queue(inf.kind, max(0.0, inf.started_at -
                                                       max(inf.created_at, inf.not_before)))

    def _on_done(self, slot: Slot, body: dict[str, Any]) -> None:
        inf = slot.running.pop(body["id"], None)
        if inf is None:
            raise ProtocolError("malformed_frame", f"DONE for {body['id']}, which is not "
                                                   f"running in this executor")
        slot.hold = False
        slot.last_busy = slot.last_progress = time.monotonic()
        self.handout.unlist(inf)
        slot.tasks_run += 1
        slot.rss_mb = float(body.get("rss_mb") or 0.0)
        if slot.state is ExecutorState.BUSY and not slot.count:
            slot.move(ExecutorState.IDLE)
        if body.get("recycle") and slot.state is not ExecutorState.STOPPING:
            slot.recycle = body["recycle"]
            log.info("executor %s leaves after task %s: %s (rss %.0f MB)",
                     slot.pid, inf.id, body["recycle"], slot.rss_mb)
            slot.move(ExecutorState.STOPPING)
            if slot.waiting:
                self.handout.steal(slot)
            self.executors.top_up()
        if inf.cancelled_by is None:  # else the cancel request recorded it and answered
            self.owner.complete(inf, body["ok"], body.get("result"), body.get("error"),
                                body.get("retry_delay_s"), bool(body.get("retryable", True)))
        self.owner.schedule_turn()

    def _on_eof(self, slot: Slot) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(slot.read_fd)
        self.pipes.forget(slot)
        for fd in (slot.read_fd, slot.write_fd, slot.steal_fd, slot.control_fd):
            os.close(fd)
        slot.control_fd = -1
        slot.eof = True
        if slot.state is not ExecutorState.STOPPING:
            slot.move(ExecutorState.STOPPING)
        # Tasks that only waited in the pipe never started: back to pending now,
        # attempt not counted, so another executor can take them at once.
        for inf in list(slot.waiting):
            self.handout.unlist(inf)
            self.owner.release(inf)
        slot.waiting.clear()
        self.executors.top_up()
        if slot.exit_status is not None or slot.pid is None:
            self.bury(slot)
        else:
            loop.call_later(STATUS_WAIT_S, self.bury, slot)

    def bury(self, slot: Slot) -> None:
        """Charge the tasks a dead executor was running (``charges.decide``);
        forget the executor. After a crash, kill what is left of its process
        group. Called once its pipe's EOF and exit status are both known (or
        ``STATUS_WAIT_S`` after the EOF); a second call does nothing."""
        if slot.state is ExecutorState.DEAD:
            return
        status = slot.exit_status or "unknown"
        restart = slot.kill_reason or slot.recycle or "crash"
        quarantine = self.handout.quarantine
        for inf, charge in charges.decide(list(slot.running.values()), slot.kill_reason,
                                          quarantine):
            self.handout.unlist(inf)
            if charge is Charge.QUARANTINE:
                quarantine.add(inf.id)
                log.warning("task %s shared executor %s that crashed (%s): it runs again "
                            "alone, attempt not counted", inf.id, slot.pid, status)
            if charge in (Charge.RELEASE, Charge.QUARANTINE):
                self.owner.release(inf)
            elif charge is not Charge.RECORDED:
                error = charges.error(charge, inf, status, slot.pid,
                                      self.owner.settings.kill_grace_s)
                self.owner.complete(inf, False, None, error, None, True)
        slot.running.clear()
        slot.move(ExecutorState.DEAD)
        self.executors.remove(slot)
        restart = "killed" if restart == "cancelled" else restart
        if restart == "crash" and slot.pid is not None:
            # What the crashed task started (its process group) would run on
            # unowned: killed, as a timeout's or a cancel's is. A group with
            # no process left is no error.
            self.executors.signal(slot, signal.SIGKILL, group=True)
        if restart in _RESTART_REASONS:
            self.owner.metrics.executor_restarted(restart)
        if restart == "crash" or slot.kill_reason:
            log.warning("executor %s ended (%s, %s)", slot.pid, status, restart)
        self.executors.top_up()
