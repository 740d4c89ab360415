"""The pool's executors: spawning, pipes, and noticing how each one ends.

A ``Fleet`` owns one ``Slot`` per executor and the pool's ends of their
pipes; the template processes they are forked from are its
``TemplateGenerations`` (``executor.pool.generations``). It turns what executors say (``STARTED``,
``PROGRESS``, ``DONE``, EOF + the template's exit status) into calls on its
``FleetOwner`` (the pool), which applies the retry policy and the store.

Supervision follows gunicorn's habit: an executor that dies is buried (its
running tasks charged as ``charges`` decides, the tasks that only waited in its
pipe released without counting an attempt) and the fleet is topped up again
at once. How many executors there are follows the work
(``executor.pool.autoscale``); which executor takes which task, the
concurrency of each (``executor.pool.capacity``).

Who is charged when an executor dies with tasks running is
``executor.pool.charges``'s decision.
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
from executor.pool import autoscale, capacity, charges
from executor.pool.capacity import Concurrency
from executor.pool.charges import Charge
from executor.pool.generations import TemplateGenerations
from executor.pool.pipes import Pipes
from executor.pool.slots import ExecutorState, Inflight, Slot
from executor.pool.templates import TemplateProcess
from executor.store import TaskRecord
from executor.wire.protocol import FrameReader, FrameType, ProtocolError, encode
from metrics import PoolMetrics

log = logging.getLogger("offload.pool")

STEAL_AFTER_S = 0.1  # take waiting tasks back from an executor that started none for this long
REBALANCE_AFTER_S = 0.02  # ... or for this long while another executor has no task
STATUS_WAIT_S = 1.0  # how long a dead executor's exit status may lag its EOF
LEASE_TAKEN = "lease lost"  # cancelled_by of a run whose claim the store gave to a later one
_RESTART_REASONS = {"crash", "timeout", "memory", "recycled", "reload", "killed"}


class FleetOwner(Protocol):
    """What the fleet needs from the pool."""

    settings: Settings
    metrics: PoolMetrics
    stopping: bool

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


class Fleet:
    """Executors of the current template generation, plus those still stopping."""

    def __init__(self, owner: FleetOwner) -> None:
        self.owner = owner
        self.slots: dict[int, Slot] = {}
        self.by_pid: dict[int, Slot] = {}
        self.inflight: dict[str, tuple[Slot, Inflight]] = {}
        self.templates = TemplateGenerations(self)
        self._next_slot = 1
        self.pipes = Pipes()
        # Given out in the current turn, not yet written (see hand_out).
        self._unsent: dict[int, list[bytes]] = {}
        self._assigned: list[tuple[Slot, Inflight]] = []
        self.concurrency = Concurrency()
        self.quarantine: set[str] = set()  # task ids that run alone (see ``charges``)
        self._last_claimed = 1  # concurrency of the last task handed out: room is counted with it
        self.starved = False  # claimed tasks fitted no executor: only empty ones get more

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

    # -- templates (``generations``) -------------------------------------------------

    async def start_template(self) -> TemplateProcess:
        """Start a template of the next generation (raises ``RuntimeError`` if task
        code does not import). The caller installs it with ``use_template``."""
        return await self.templates.start()

    def use_template(self, tpl: TemplateProcess) -> None:
        """Make ``tpl`` current: older executors finish their task and leave."""
        self.templates.use(tpl)

    def close(self) -> None:
        """Stop listening to every template (they exit on EOF)."""
        self.templates.close()

    def spawned(self, slot_id: int, pid: int) -> None:
        """See ``GenerationsOwner.spawned``."""
        slot = self.slots.get(slot_id)
        if slot is not None:
            slot.pid = pid
            self.by_pid[pid] = slot
            if slot.state is ExecutorState.STOPPING:
                self._signal(slot, signal.SIGTERM, group=False)
            elif slot.state is ExecutorState.STARTING:
                slot.move(ExecutorState.BUSY if slot.count else ExecutorState.IDLE)

    def exited(self, pid: int, status: str) -> None:
        """See ``GenerationsOwner.exited``: buried now if its pipe's EOF came first."""
        slot = self.by_pid.get(pid)
        if slot is not None:
            slot.exit_status = status
            if slot.eof:
                self._bury(slot)

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
        asyncio.get_running_loop().add_reader(res_r, self._readable, slot)

    def stop(self, slot: Slot, reason: str) -> None:
        """Let the executor finish its running tasks, then exit (SIGTERM is only
        a flag). Tasks waiting in its pipe are taken back as soon as can be."""
        if slot.state in (ExecutorState.STOPPING, ExecutorState.DEAD):
            return
        slot.move(ExecutorState.STOPPING)
        slot.recycle = slot.recycle or reason
        if slot.pid is not None:
            self._signal(slot, signal.SIGTERM, group=False)
        else:
            self.pipes.write(slot, encode(FrameType.STOP, {}))
        if slot.waiting:
            self.steal(slot)

    def stop_all(self, reason: str) -> None:
        """``stop`` every executor."""
        for slot in list(self.slots.values()):
            self.stop(slot, reason)

    def kill(self, slot: Slot, reason: str) -> None:
        """Kill the executor's whole process group (the tasks' children too)."""
        slot.kill_reason = slot.kill_reason or reason
        if slot.pid is not None:
            self._signal(slot, signal.SIGKILL, group=True)

    @staticmethod
    def _signal(slot: Slot, sig: int, group: bool) -> None:
        assert slot.pid is not None
        try:
            (os.killpg if group else os.kill)(slot.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            log.error("cannot signal executor %d: %s", slot.pid, exc)

    # -- handing out tasks -------------------------------------------------------------

    def concurrency_of(self, kind: str, task_id: str) -> int:
        """The concurrency a task is placed with (1 in quarantine)."""
        return self.concurrency.of(kind, self.manifest, self.settings.async_concurrency,
                                   task_id in self.quarantine)

    def room(self) -> list[tuple[Slot, int]]:
        """``places()``, or ``[]`` when no executor needs tasks yet (claims are
        batched: an executor is refilled when few tasks wait in its pipe)."""
        live = self.live()
        if not any(capacity.wants_more(s, capacity.guess(s, self._last_claimed))
                   for s in live):
            return []
        return self.places(live)

    def places(self, live: list[Slot] | None = None, concurrency: int | None = None
               ) -> list[tuple[Slot, int]]:
        """``(slot, free places)`` of every live executor, counted for tasks of
        ``concurrency`` (default: each executor's own, or the last claimed
        task's for an empty one). After a claim that fitted nowhere
        (``starved``) only empty executors count, until one takes a task."""
        out = []
        for s in self.live() if live is None else live:
            if self.starved and s.count:
                continue
            c = concurrency if concurrency is not None else capacity.guess(s, self._last_claimed)
            out.append((s, capacity.places(s, c)))
        return out

    def hand_out(self, room: list[tuple[Slot, int]], claimed: list[TaskRecord]
                 ) -> list[TaskRecord]:
        """Give ``claimed`` to the executors in ``room`` that have a place for
        each (``capacity.Placer``). Returns the leftovers: tasks no executor
        could take beside what it holds (the caller puts them back).

        The tasks count against their executors' room at once, but reach the
        pipes only with ``send_handed_out``, once the claim is committed;
        ``undo_handed_out`` forgets them if it was rolled back instead."""
        placer = capacity.Placer([slot for slot, _ in room])
        frames = self._unsent
        left: list[TaskRecord] = []
        now = time.monotonic()
        for rec in claimed:
            solo = rec.id in self.quarantine
            c = self.concurrency_of(rec.kind, rec.id)
            slot = placer.place(c)
            if slot is None:
                left.append(rec)
                continue
            self._last_claimed = c
            if rec.id in self.inflight:
                self._give_up_earlier_claim(rec.id)
            inf = Inflight(rec.id, rec.kind, rec.attempts, rec.max_retries, rec.timeout_s,
                           rec.created_at, rec.not_before, token=rec.lease_token,
                           concurrency=c, solo=solo)
            slot.waiting.append(inf)
            slot.last_busy = now
            self.inflight[rec.id] = (slot, inf)
            self._assigned.append((slot, inf))
            desc = {"id": rec.id, "kind": rec.kind, "payload": rec.payload, "ref": rec.ref,
                    "attempt": rec.attempts, "max_retries": rec.max_retries,
                    "timeout_s": rec.timeout_s, "concurrency": c}
            if solo:
                desc["solo"] = True
            frames.setdefault(slot.slot_id, []).append(encode(FrameType.RUN, desc))
        self.starved = bool(left)
        return left

    def _give_up_earlier_claim(self, task_id: str) -> None:
        """A new claim of ``task_id`` while an earlier one still runs (or waits)
        here: the store took the earlier claim back (its lease expired while
        this pool was paused, or it was cancelled on another host and run
        again) before this pool's renewal noticed. The earlier run is no
        longer this pool's: stopped without an outcome, as the renewal would
        (``leases.LeaseKeeper.give_up``), so it cannot run on beside the new one."""
        log.warning("task %s: claimed again while an earlier claim of it still runs here "
                    "(its lease was taken back): stopping that run", task_id)
        if not self.take_back(task_id):
            self.cancel_running(task_id, LEASE_TAKEN)

    def _unlist(self, inf: Inflight) -> None:
        """``inf`` left its executor: forget it, unless the id is another
        (later) claim's by now (``_give_up_earlier_claim``)."""
        entry = self.inflight.get(inf.id)
        if entry is not None and entry[1] is inf:
            del self.inflight[inf.id]

    def send_handed_out(self) -> None:
        """Write the tasks given out since the last call to their pipes."""
        frames, self._unsent, self._assigned = self._unsent, {}, []
        for slot_id, parts in frames.items():
            slot = self.slots.get(slot_id)
            if slot is not None:  # one that ended meanwhile: its EOF released them
                self.pipes.write(slot, b"".join(parts))

    def undo_handed_out(self) -> None:
        """Forget the tasks given out since the last ``send_handed_out`` (their
        claim was rolled back): they never reach a pipe."""
        for slot, inf in self._assigned:
            if inf in slot.waiting:
                slot.waiting.remove(inf)
            self._unlist(inf)
        self._unsent, self._assigned = {}, []

    def steal(self, slot: Slot) -> None:
        """Take the tasks waiting in ``slot``'s pipe back, if it has not taken them.

        Runs when they waited too long; they go back to pending (no attempt
        counted) for another executor, and ``slot`` gets no more than it can
        start (``hold``) until a task of its ends. Holding the pipe's flock
        makes this atomic with the executor's own frame reads.
        """
        data = self.pipes.read_back(slot)
        if data is None:
            return
        slot.hold = True
        frames = list(FrameReader(1 << 62).feed(data))
        taken = {body["id"] for ftype, body in frames if ftype == FrameType.RUN}
        others = [encode(ftype, body) for ftype, body in frames if ftype != FrameType.RUN]
        if others:  # a STOP written before the executor was up: it still needs it
            self.pipes.write(slot, b"".join(others))
        for inf in [i for i in slot.waiting if i.id in taken]:
            slot.waiting.remove(inf)
            self._unlist(inf)
            self.owner.release(inf)

    def watch(self, now: float) -> None:
        """Periodic checks: take tasks back from executors that do not start
        them, enforce hard limits and forced cancels that were ignored, reap
        exited templates."""
        grace = self.settings.kill_grace_s
        mono = time.monotonic()
        someone_empty = any(s.count == 0 for s in self.live())
        for slot in list(self.slots.values()):
            if slot.waiting:
                stalled = mono - slot.last_progress
                if slot.state is ExecutorState.STOPPING or (slot.running and (
                        stalled > STEAL_AFTER_S
                        or (someone_empty and stalled > REBALANCE_AFTER_S))):
                    self.steal(slot)
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

    def take_back(self, task_id: str) -> bool:
        """Take ``task_id`` back to pending if it only waits in an executor's pipe.

        True if it is pending again; False if it is not handed out here, has
        started, or its executor is taking it right now.
        """
        entry = self.inflight.get(task_id)
        if entry is None or entry[1].started_at is not None:
            return False
        self.steal(entry[0])
        return task_id not in self.inflight

    def cancel_running(self, task_id: str, by: str) -> bool:
        """Stop the running task ``task_id``; False if it is not running here.

        An ``async def`` task is cancelled alone (``CANCEL``; its executor
        is killed only if it ignores that for ``kill_grace_s``); any other
        task's executor is killed. A task still waiting in the pipe (it could
        not be taken back) is not the executor's to lose yet: it is stopped
        when it starts (``_on_started``), so the tasks before it are spared.
        """
        entry = self.inflight.get(task_id)
        if entry is None:
            return False
        slot, inf = entry
        inf.cancelled_by = by
        if inf.started_at is not None:
            self._stop_cancelled(slot, inf)
        return True

    def _stop_cancelled(self, slot: Slot, inf: Inflight) -> None:
        if inf.is_async and slot.control_fd >= 0:
            inf.cancel_sent_at = time.time()
            try:
                os.write(slot.control_fd, encode(FrameType.CANCEL, {"id": inf.id}))
                return
            except OSError:
                pass  # its control pipe is full or gone: kill, as for a def task
        self.kill(slot, "cancelled")

    def rows(self) -> list[dict[str, Any]]:
        """One row per executor for ``/queue/stats``: ``running`` (ids of its
        running tasks), ``free`` (how many more it could start now) and, kept
        for older clients, ``task_id`` (the first running one)."""
        rows = []
        default = self.settings.async_concurrency
        for slot in self.slots.values():
            running = list(slot.running)
            rows.append({"pid": slot.pid, "state": slot.state.value,
                         "task_id": running[0] if running else None, "running": running,
                         "free": slot.free(default) if slot.accepting else 0,
                         "tasks_run": slot.tasks_run, "rss_mb": slot.rss_mb})
        return rows

    def states(self) -> dict[str, int]:
        """Executors per state (dead ones excluded)."""
        states: dict[str, int] = {}
        for slot in self.slots.values():
            if slot.state is not ExecutorState.DEAD:
                states[slot.state.value] = states.get(slot.state.value, 0) + 1
        return states

    def task_places(self) -> dict[str, int]:
        """``{"busy": tasks running, "free": tasks that could start now}`` over
        the executors that take tasks (an empty one counts ``async_concurrency``
        free)."""
        default = self.settings.async_concurrency
        live = [s for s in self.slots.values() if s.accepting]
        return {"busy": sum(len(s.running) for s in self.slots.values()),
                "free": sum(s.free(default) for s in live)}

    # -- what executors say --------------------------------------------------------------

    def _readable(self, slot: Slot) -> None:
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
                    entry = self.inflight.get(body.get("id", ""))
                    if entry is not None:
                        entry[1].progress = {"value": body.get("value"),
                                             "message": body.get("message", "")}
                elif ftype == FrameType.DONE:
                    self._on_done(slot, body)
        except (ProtocolError, KeyError, IndexError) as exc:
            log.error("executor %s broke the protocol (%s): killing it", slot.pid, exc)
            self.kill(slot, "crash")

    def _on_started(self, slot: Slot, body: dict[str, Any]) -> None:
        inf = slot.waiting[0]
        if inf.id != body["id"]:
            raise ProtocolError("malformed_frame", f"STARTED for {body['id']}, expected {inf.id}")
        slot.waiting.popleft()
        slot.running[inf.id] = inf
        slot.last_progress = time.monotonic()
        inf.started_at = time.time()
        inf.is_async = bool(body.get("async"))
        self.concurrency.learn(inf.kind, self.manifest, body.get("concurrency"))
        self.owner.started(inf)
        if slot.state is ExecutorState.IDLE:
            slot.move(ExecutorState.BUSY)
        if inf.cancelled_by is not None:  # cancelled with force while it waited in the pipe
            self._stop_cancelled(slot, inf)
        self.owner.metrics.observe_queue(inf.kind, max(0.0, inf.started_at -
                                                       max(inf.created_at, inf.not_before)))

    def _on_done(self, slot: Slot, body: dict[str, Any]) -> None:
        inf = slot.running.pop(body["id"], None)
        if inf is None:
            raise ProtocolError("malformed_frame", f"DONE for {body['id']}, which is not "
                                                   f"running in this executor")
        slot.hold = False
        slot.last_busy = slot.last_progress = time.monotonic()
        self._unlist(inf)
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
                self.steal(slot)
            self.top_up()
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
            self._unlist(inf)
            self.owner.release(inf)
        slot.waiting.clear()
        self.top_up()
        if slot.exit_status is not None or slot.pid is None:
            self._bury(slot)
        else:
            loop.call_later(STATUS_WAIT_S, self._bury, slot)

    def _bury(self, slot: Slot) -> None:
        """Charge the tasks a dead executor was running (``charges.decide``);
        forget the executor. After a crash, kill what is left of its process group."""
        if slot.state is ExecutorState.DEAD:
            return
        status = slot.exit_status or "unknown"
        restart = slot.kill_reason or slot.recycle or "crash"
        for inf, charge in charges.decide(list(slot.running.values()), slot.kill_reason,
                                          self.quarantine):
            self._unlist(inf)
            if charge is Charge.QUARANTINE:
                self.quarantine.add(inf.id)
                log.warning("task %s shared executor %s that crashed (%s): it runs again "
                            "alone, attempt not counted", inf.id, slot.pid, status)
            if charge in (Charge.RELEASE, Charge.QUARANTINE):
                self.owner.release(inf)
            elif charge is not Charge.RECORDED:
                error = charges.error(charge, inf, status, slot.pid, self.settings.kill_grace_s)
                self.owner.complete(inf, False, None, error, None, True)
        slot.running.clear()
        slot.move(ExecutorState.DEAD)
        self.slots.pop(slot.slot_id, None)
        if slot.pid is not None:
            self.by_pid.pop(slot.pid, None)
        restart = "killed" if restart == "cancelled" else restart
        if restart == "crash" and slot.pid is not None:
            # What the crashed task started (its process group) would run on
            # unowned: killed, as a timeout's or a cancel's is. A group with
            # no process left is no error.
            self._signal(slot, signal.SIGKILL, group=True)
        if restart in _RESTART_REASONS:
            self.owner.metrics.executor_restarted(restart)
        if restart == "crash" or slot.kill_reason:
            log.warning("executor %s ended (%s, %s)", slot.pid, status, restart)
        self.top_up()

    def forget(self, task_id: str) -> None:
        """A task ended for good (its final status is stored): leave quarantine."""
        self.quarantine.discard(task_id)
