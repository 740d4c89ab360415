"""The pool's executors: spawning, stopping, killing, and keeping their number.

A ``Fleet`` owns one ``Slot`` per executor and the pool's ends of their
pipes, and is the pool's one handle on them (``FleetOwner`` is what it needs
of the pool). Its parts, each in its own module, hang off it and are called
directly (``pool.fleet.handout.take_back(task_id)``), not through the fleet:

- ``templates`` (``generations``): the template processes the executors are
  forked from (``start``, ``use``, ``close``; reloads, and a dead template's
  replacement);
- ``handout``: which executor holds which task (``inflight``; hand out,
  take back, cancel);
- ``results``: what executors say (``STARTED``, ``PROGRESS``, ``DONE``) and
  how each one ends (EOF + exit status: burial, ``charges``).

What ``/queue/stats`` and the metrics show of ``slots`` is ``census``'s.

Supervision follows gunicorn's habit: an executor that dies is buried and
the fleet is topped up again at once. How many executors there are follows
the work (``executor.pool.autoscale``); which executor takes which task, the
concurrency of each (``executor.pool.capacity``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any, Protocol

from config import Settings
from executor.pool import autoscale
from executor.pool.generations import TemplateGenerations
from executor.pool.handout import Handout, HandoutOwner
from executor.pool.pipes import Pipes
from executor.pool.results import STATUS_WAIT_S, ResultReader, ResultsOwner
from executor.pool.slots import ExecutorState, Slot
from executor.wire.protocol import FrameReader, FrameType, encode

__all__ = ["STATUS_WAIT_S", "Fleet", "FleetOwner"]  # STATUS_WAIT_S: see ``results``

log = logging.getLogger("offload.pool")


class FleetOwner(ResultsOwner, HandoutOwner, Protocol):
    """What the fleet needs from the pool: what its parts need
    (``ResultsOwner``: settle tasks and count; ``HandoutOwner``: release
    them), and whether the pool is stopping (then no executor is started)."""

    stopping: bool


class Fleet:
    """Executors of the current template generation, plus those still stopping."""

    def __init__(self, owner: FleetOwner) -> None:
        self.owner = owner
        self.slots: dict[int, Slot] = {}
        self.by_pid: dict[int, Slot] = {}
        self._next_slot = 1
        self.pipes = Pipes()
        self.templates = TemplateGenerations(self)
        self.handout = Handout(owner, self, self.pipes)
        self.results = ResultReader(owner, self, self.handout, self.pipes)

    @property
    def settings(self) -> Settings:
        return self.owner.settings

    @property
    def stopping(self) -> bool:
        """The pool is stopping: no executor is started any more."""
        return self.owner.stopping

    @property
    def manifest(self) -> dict[str, dict[str, Any]]:
        """Registered kinds and their options (``TemplateGenerations.manifest``)."""
        return self.templates.manifest

    # -- what the templates report (``GenerationsOwner``) -----------------------------

    def spawned(self, slot_id: int, pid: int) -> None:
        """See ``GenerationsOwner.spawned``."""
        slot = self.slots.get(slot_id)
        if slot is not None:
            slot.pid = pid
            self.by_pid[pid] = slot
            if slot.state is ExecutorState.STOPPING:
                self.signal(slot, signal.SIGTERM, group=False)
            elif slot.state is ExecutorState.STARTING:
                slot.move(ExecutorState.BUSY if slot.count else ExecutorState.IDLE)

    def exited(self, pid: int, status: str) -> None:
        """See ``GenerationsOwner.exited``: buried now if its pipe's EOF came first."""
        slot = self.by_pid.get(pid)
        if slot is not None:
            slot.exit_status = status
            if slot.eof:
                self.results.bury(slot)

    def stop_executors(self, reason: str, of: Callable[[int], bool]) -> None:
        """``stop`` every executor whose template generation ``of`` accepts."""
        for slot in list(self.slots.values()):
            if of(slot.generation):
                self.stop(slot, reason)

    # -- executors -------------------------------------------------------------------

    def live(self) -> list[Slot]:
        """Executors of the current generation that take new tasks."""
        gen = self.templates.generation
        return [s for s in self.slots.values() if s.accepting and s.generation == gen]

    def top_up(self) -> None:
        """Spawn executors up to ``executors``; stop those above ``executors_max``
        (the fewest tasks first; each finishes what it runs before it leaves)."""
        if self.owner.stopping or self.templates.current is None:
            return
        live = self.live()
        minimum, maximum = autoscale.bounds(self.settings.executors, self.settings.executors_max)
        for _ in range(minimum - len(live)):
            self._spawn()
        extra = len(live) - maximum
        if extra > 0:
            for slot in sorted(live, key=lambda s: s.count)[:extra]:
                self.stop(slot, "reload")
        self.owner.schedule_turn()

    def autoscale(self, due_waiting: Callable[[], bool]) -> None:
        """Grow while due tasks wait (``due_waiting()``, asked only when growing
        could help) and every executor is busy; stop executors idle too long."""
        if self.owner.stopping or self.templates.current is None:
            return
        live = self.live()
        minimum, maximum = autoscale.bounds(self.settings.executors, self.settings.executors_max)
        if autoscale.may_grow(live, maximum) and due_waiting():
            n = autoscale.grow_by(len(live), maximum)
            log.info("due tasks wait and all %d executor(s) are busy: starting %d more",
                     len(live), n)
            for _ in range(n):
                self._spawn()
            self.owner.schedule_turn()  # they take tasks at once (pipes before processes)
            return
        for slot in autoscale.idle_to_stop(live, minimum, self.settings.executor_idle_s,
                                           time.monotonic()):
            self.stop(slot, "idle")

    def _limits(self) -> dict[str, Any]:
        s = self.settings
        return {"max_tasks": s.max_tasks_per_executor, "max_memory_mb": s.max_memory_mb,
                "memory_limit_mb": s.memory_limit_mb, "max_result_bytes": s.max_result_bytes,
                "max_frame_bytes": s.max_frame_bytes, "nice": s.executor_nice,
                "async_concurrency": s.async_concurrency}

    def _spawn(self) -> None:
        template = self.templates.current
        assert template is not None
        task_r, task_w = os.pipe()
        res_r, res_w = os.pipe()
        ctl_r, ctl_w = os.pipe()
        # A second open file description of the task pipe: flock on it excludes
        # the executor's reads, so a waiting task can be taken back (steal).
        steal_fd = os.open(f"/proc/self/fd/{task_r}", os.O_RDONLY | os.O_NONBLOCK)
        slot = Slot(self._next_slot, template.generation, task_w, res_r, steal_fd,
                    FrameReader(self.settings.max_frame_bytes), control_fd=ctl_w)
        self._next_slot += 1
        ok = template.spawn(slot.slot_id, self._limits(), [task_r, res_w, ctl_r])
        for fd in (task_r, res_w, ctl_r):
            os.close(fd)
        if not ok:
            for fd in (task_w, res_r, steal_fd, ctl_w):
                os.close(fd)
            return
        os.set_blocking(task_w, False)
        os.set_blocking(res_r, False)
        os.set_blocking(ctl_w, False)
        self.slots[slot.slot_id] = slot
        asyncio.get_running_loop().add_reader(res_r, self.results.readable, slot)

    def stop(self, slot: Slot, reason: str) -> None:
        """Let the executor finish its running tasks, then exit (SIGTERM is only
        a flag). Tasks waiting in its pipe are taken back as soon as can be."""
        if slot.state in (ExecutorState.STOPPING, ExecutorState.DEAD):
            return
        slot.move(ExecutorState.STOPPING)
        slot.recycle = slot.recycle or reason
        if slot.pid is not None:
            self.signal(slot, signal.SIGTERM, group=False)
        else:
            self.pipes.write(slot, encode(FrameType.STOP, {}))
        if slot.waiting:
            self.handout.steal(slot)

    def stop_all(self, reason: str) -> None:
        """``stop`` every executor."""
        for slot in list(self.slots.values()):
            self.stop(slot, reason)

    def kill(self, slot: Slot, reason: str) -> None:
        """Kill the executor's whole process group (the tasks' children too)."""
        slot.kill_reason = slot.kill_reason or reason
        if slot.pid is not None:
            self.signal(slot, signal.SIGKILL, group=True)

    @staticmethod
    def signal(slot: Slot, sig: int, group: bool) -> None:
        """Send ``sig`` to the executor (``group``: to its process group); one
        already gone is no error."""
        assert slot.pid is not None
        try:
            (os.killpg if group else os.kill)(slot.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            log.error("cannot signal executor %d: %s", slot.pid, exc)

    def remove(self, slot: Slot) -> None:
        """Forget a buried executor (``ResultReader.bury``)."""
        self.slots.pop(slot.slot_id, None)
        if slot.pid is not None:
            self.by_pid.pop(slot.pid, None)

    def watch(self, now: float) -> None:
        """Periodic checks: take tasks back from executors that do not start
        them (``Handout.take_back_stalled``), enforce hard limits and forced
        cancels that were ignored, reap exited templates."""
        self.handout.take_back_stalled(list(self.slots.values()), self.live())
        grace = self.settings.kill_grace_s
        for slot in list(self.slots.values()):
            if slot.kill_reason is not None:
                continue
            for inf in slot.running.values():
                assert inf.started_at is not None
                if now > inf.started_at + inf.timeout_s + grace:
                    inf.late = True
                    log.warning("task %s passed its hard time limit: killing executor %s",
                                inf.id, slot.pid)
                    self.kill(slot, "timeout")
                elif inf.cancel_sent_at is not None and now > inf.cancel_sent_at + grace:
                    log.warning("task %s ignored its cancel for %g s: killing executor %s",
                                inf.id, grace, slot.pid)
                    self.kill(slot, "cancelled")
        self.templates.reap()

    # -- room for tasks (``handout``, on the live executors) ----------------------------

    def room(self) -> list[tuple[Slot, int]]:
        """``Handout.room`` of the live executors: ``[]`` while none needs tasks yet."""
        return self.handout.room(self.live())

    def places(self, concurrency: int | None = None) -> list[tuple[Slot, int]]:
        """``Handout.places`` of the live executors, counted for tasks of
        ``concurrency`` (default: each executor's own)."""
        return self.handout.places(self.live(), concurrency)
