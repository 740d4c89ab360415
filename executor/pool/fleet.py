"""The pool's executors: spawning, pipes, and noticing how each one ends.

A ``Fleet`` owns the template process(es), one ``Slot`` per executor and the
pool's ends of their pipes. It turns what executors say (``STARTED``,
``PROGRESS``, ``DONE``, EOF + the template's exit status) into calls on its
``FleetOwner`` (the pool), which applies the retry policy and the store.

Supervision follows gunicorn's habit: an executor that dies is buried (its
running task recorded as crash/timeout/cancelled, the tasks that only waited
in its pipe released without counting an attempt) and the fleet is topped
up again at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any, Protocol

from config import Settings
from executor.pool.pipes import Pipes
from executor.pool.slots import ExecutorState, Inflight, Slot
from executor.pool.templates import TemplateProcess
from executor.store import TaskRecord
from executor.wire.protocol import FrameReader, FrameType, ProtocolError, encode
from metrics import PoolMetrics

log = logging.getLogger("offload.pool")

PREFETCH = 16  # tasks that may wait in an executor's pipe behind the running one
REFILL_AT = 4  # top an executor's pipe up only when this few tasks wait (bigger batches)
STEAL_AFTER_S = 0.1  # take a waiting task back from behind one running this long
STATUS_WAIT_S = 1.0  # how long a dead executor's exit status may lag its EOF
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
        self.template: TemplateProcess | None = None
        # The manifest of the template that died, while its successor loads.
        self._last_manifest: dict[str, dict[str, Any]] = {}
        self.old_templates: list[TemplateProcess] = []
        self._exited_templates: list[TemplateProcess] = []  # socket closed, not yet reaped
        self._next_slot = 1
        self._generation = 0
        self.pipes = Pipes()
        # Given out in the current turn, not yet written (see hand_out).
        self._unsent: dict[int, list[bytes]] = {}
        self._assigned: list[tuple[Slot, Inflight]] = []

    @property
    def settings(self) -> Settings:
        return self.owner.settings

    @property
    def manifest(self) -> dict[str, dict[str, Any]]:
        """Registered kinds and their options, from the current template; while
        a dead template's successor loads, the dead one's: the same modules
        are being imported again, and a submission of a registered kind must
        be stored (it runs once executors are back), not refused as unknown."""
        return self.template.manifest if self.template is not None else self._last_manifest

    # -- templates -----------------------------------------------------------------

    async def start_template(self) -> TemplateProcess:
        """Start a template of the next generation (raises ``RuntimeError`` if task
        code does not import). The caller installs it with ``use_template``."""
        self._generation += 1
        tpl = TemplateProcess(self._generation, list(self.settings.task_modules),
                              self._on_template_message, self._on_template_exit)
        await tpl.start()
        log.info("task code loaded (generation %d): %d kind(s)", tpl.generation,
                 len(tpl.manifest))
        return tpl

    def use_template(self, tpl: TemplateProcess) -> None:
        """Make ``tpl`` current: older executors finish their task and leave."""
        old, self.template = self.template, tpl
        if old is not None:
            old.drain()
            self.old_templates.append(old)
        for slot in list(self.slots.values()):
            if slot.generation != tpl.generation:
                self.stop(slot, "reload")
        self.top_up()

    def _on_template_message(self, tpl: TemplateProcess, ftype: FrameType,
                             body: dict[str, Any]) -> None:
        if ftype == FrameType.SPAWNED:
            slot = self.slots.get(body["slot"])
            if slot is not None:
                slot.pid = body["pid"]
                self.by_pid[slot.pid] = slot
                if slot.state is ExecutorState.STOPPING:
                    self._signal(slot, signal.SIGTERM, group=False)
                elif slot.state is ExecutorState.STARTING:
                    slot.move(ExecutorState.BUSY if slot.inflight else ExecutorState.IDLE)
        elif ftype == FrameType.EXITED:
            slot = self.by_pid.get(body["pid"])
            if slot is not None:
                slot.exit_status = body["status"]
                if slot.eof:
                    self._bury(slot)

    def _on_template_exit(self, tpl: TemplateProcess) -> None:
        # Its socket closed; the process may take a moment more to exit:
        # ``watch`` reaps it then (no zombie left behind).
        self._exited_templates.append(tpl)
        if tpl in self.old_templates:
            self.old_templates.remove(tpl)
            return
        if tpl is self.template and not self.owner.stopping:
            log.error("the template process died: starting a new one")
            self._last_manifest = tpl.manifest
            for slot in list(self.slots.values()):
                if slot.generation == tpl.generation:
                    self.stop(slot, "crash")
            self.template = None
            asyncio.get_running_loop().create_task(self._restart_template())

    async def _restart_template(self) -> None:
        delay = 0.1
        while not self.owner.stopping and self.template is None:
            try:
                self.template = await self.start_template()
            except RuntimeError as exc:
                log.error("%s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self.top_up()

    def close(self) -> None:
        """Stop listening to every template (they exit on EOF)."""
        for tpl in [self.template, *self.old_templates]:
            if tpl is not None:
                tpl.close()

    # -- executors -------------------------------------------------------------------

    def live(self) -> list[Slot]:
        """Executors of the current generation that take new tasks."""
        gen = self.template.generation if self.template else -1
        return [s for s in self.slots.values() if s.accepting and s.generation == gen]

    def top_up(self) -> None:
        """Spawn or stop executors until the current generation has the wanted count."""
        if self.owner.stopping or self.template is None:
            return
        live = self.live()
        for _ in range(self.settings.executors - len(live)):
            self._spawn()
        extra = len(live) - self.settings.executors
        if extra > 0:
            for slot in sorted(live, key=lambda s: len(s.inflight))[:extra]:
                self.stop(slot, "reload")
        self.owner.schedule_turn()

    def _limits(self) -> dict[str, Any]:
        s = self.settings
        return {"max_tasks": s.max_tasks_per_executor, "max_memory_mb": s.max_memory_mb,
                "memory_limit_mb": s.memory_limit_mb, "max_result_bytes": s.max_result_bytes,
                "max_frame_bytes": s.max_frame_bytes, "nice": s.executor_nice}

    def _spawn(self) -> None:
        assert self.template is not None
        task_r, task_w = os.pipe()
        res_r, res_w = os.pipe()
        # A second open file description of the task pipe: flock on it excludes
        # the executor's reads, so a waiting task can be taken back (steal).
        steal_fd = os.open(f"/proc/self/fd/{task_r}", os.O_RDONLY | os.O_NONBLOCK)
        slot = Slot(self._next_slot, self.template.generation, task_w, res_r, steal_fd,
                    FrameReader(self.settings.max_frame_bytes))
        self._next_slot += 1
        ok = self.template.spawn(slot.slot_id, self._limits(), [task_r, res_w])
        os.close(task_r)
        os.close(res_w)
        if not ok:
            for fd in (task_w, res_r, steal_fd):
                os.close(fd)
            return
        os.set_blocking(task_w, False)
        os.set_blocking(res_r, False)
        self.slots[slot.slot_id] = slot
        asyncio.get_running_loop().add_reader(res_r, self._readable, slot)

    def stop(self, slot: Slot, reason: str) -> None:
        """Let the executor finish its running task, then exit (SIGTERM is only a flag)."""
        if slot.state in (ExecutorState.STOPPING, ExecutorState.DEAD):
            return
        slot.move(ExecutorState.STOPPING)
        slot.recycle = slot.recycle or reason
        if slot.pid is not None:
            self._signal(slot, signal.SIGTERM, group=False)
        else:
            self.pipes.write(slot, encode(FrameType.STOP, {}))

    def stop_all(self, reason: str) -> None:
        """``stop`` every executor."""
        for slot in list(self.slots.values()):
            self.stop(slot, reason)

    def kill(self, slot: Slot, reason: str) -> None:
        """Kill the executor's whole process group (the task's children too)."""
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

    def room(self) -> list[tuple[Slot, int]]:
        """``places()``, or ``[]`` when no executor needs tasks yet (claims are
        batched: an executor is refilled when few tasks wait)."""
        live = self.live()
        if all(len(s.inflight) > REFILL_AT for s in live):
            return []
        return self.places(live)

    def places(self, live: list[Slot] | None = None) -> list[tuple[Slot, int]]:
        """``(slot, free places)`` of every live executor: one behind a slow task
        (``hold``), else ``PREFETCH`` behind the running one."""
        return [(s, (1 if s.hold else PREFETCH + 1) - len(s.inflight))
                for s in (self.live() if live is None else live)]

    def hand_out(self, room: list[tuple[Slot, int]], claimed: list[TaskRecord]
                 ) -> list[TaskRecord]:
        """Give ``claimed`` to the executors in ``room``, emptiest first (an idle
        executor gets a task before a busy one gets a second). Returns leftovers.

        The tasks count against their executors' room at once, but reach the
        pipes only with ``send_handed_out``, once the claim is committed;
        ``undo_handed_out`` forgets them if it was rolled back instead."""
        room = sorted(room, key=lambda p: len(p[0].inflight))
        frames = self._unsent
        it = iter(claimed)
        for depth in range(PREFETCH + 1):
            for slot, n in room:
                if len(slot.inflight) != depth or n <= 0 or (slot.hold and depth > 0):
                    continue
                rec = next(it, None)
                if rec is None:
                    break
                inf = Inflight(rec.id, rec.kind, rec.attempts, rec.max_retries, rec.timeout_s,
                               rec.created_at, rec.not_before, token=rec.lease_token)
                slot.inflight.append(inf)
                self.inflight[rec.id] = (slot, inf)
                self._assigned.append((slot, inf))
                desc = {"id": rec.id, "kind": rec.kind, "payload": rec.payload, "ref": rec.ref,
                        "attempt": rec.attempts, "max_retries": rec.max_retries,
                        "timeout_s": rec.timeout_s}
                frames.setdefault(slot.slot_id, []).append(encode(FrameType.RUN, desc))
        return list(it)

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
            if inf in slot.inflight:
                slot.inflight.remove(inf)
            self.inflight.pop(inf.id, None)
        self._unsent, self._assigned = {}, []

    def steal(self, slot: Slot) -> None:
        """Take the tasks waiting in ``slot``'s pipe back, if it has not taken them.

        Runs when the executor's current task is slow; the tasks go back to
        pending (no attempt counted) for an idle executor. Holding the pipe's
        flock makes this atomic with the executor's own frame reads.
        """
        data = self.pipes.read_back(slot)
        if data is None:
            return
        cur = slot.current
        slot.hold = cur.id if cur is not None else None
        taken = {body["id"] for ftype, body in FrameReader(1 << 62).feed(data)
                 if ftype == FrameType.RUN}
        for inf in [i for i in slot.inflight if i.id in taken]:
            slot.inflight.remove(inf)
            self.inflight.pop(inf.id, None)
            self.owner.release(inf)

    def watch(self, now: float) -> None:
        """Periodic checks: take tasks back from behind slow ones, enforce hard limits."""
        grace = self.settings.kill_grace_s
        for slot in list(self.slots.values()):
            cur = slot.current
            if cur is None or cur.started_at is None:
                continue
            if len(slot.inflight) > 1 and now - cur.started_at > STEAL_AFTER_S:
                self.steal(slot)
            if slot.kill_reason is None and now > cur.started_at + cur.timeout_s + grace:
                log.warning("task %s passed its hard time limit: killing executor %s",
                            cur.id, slot.pid)
                self.kill(slot, "timeout")
        for tpl in list(self.old_templates):
            tpl.reap()
        self._exited_templates = [tpl for tpl in self._exited_templates if not tpl.reap()]

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
        """Kill the executor running ``task_id``; False if it is not running here.

        A task still waiting behind another one in the pipe (it could not be
        taken back) is not the executor's to lose yet: it is killed when it
        starts (``_on_started``), so the task running before it is spared.
        """
        entry = self.inflight.get(task_id)
        if entry is None:
            return False
        slot, inf = entry
        inf.cancelled_by = by
        if inf.started_at is not None or inf is slot.inflight[0]:
            self.kill(slot, "cancelled")
        return True

    def rows(self) -> list[dict[str, Any]]:
        """One row per executor for ``/queue/stats``."""
        rows = []
        for slot in self.slots.values():
            cur = slot.current
            rows.append({"pid": slot.pid, "state": slot.state.value,
                         "task_id": cur.id if cur else None, "tasks_run": slot.tasks_run,
                         "rss_mb": slot.rss_mb})
        return rows

    def states(self) -> dict[str, int]:
        """Executors per state (dead ones excluded)."""
        states: dict[str, int] = {}
        for slot in self.slots.values():
            if slot.state is not ExecutorState.DEAD:
                states[slot.state.value] = states.get(slot.state.value, 0) + 1
        return states

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
        inf = slot.inflight[0]
        if inf.id != body["id"]:
            raise ProtocolError("malformed_frame", f"STARTED for {body['id']}, expected {inf.id}")
        inf.started_at = time.time()
        self.owner.started(inf)
        if slot.state is ExecutorState.IDLE:
            slot.move(ExecutorState.BUSY)
        if inf.cancelled_by is not None:  # cancelled with force while it waited in the pipe
            self.kill(slot, "cancelled")
        self.owner.metrics.observe_queue(inf.kind, max(0.0, inf.started_at -
                                                       max(inf.created_at, inf.not_before)))

    def _on_done(self, slot: Slot, body: dict[str, Any]) -> None:
        inf = slot.inflight.popleft()
        if inf.id != body["id"]:
            raise ProtocolError("malformed_frame", f"DONE for {body['id']}, expected {inf.id}")
        slot.hold = None
        self.inflight.pop(inf.id, None)
        slot.tasks_run += 1
        slot.rss_mb = float(body.get("rss_mb") or 0.0)
        if slot.state is ExecutorState.BUSY and not slot.inflight:
            slot.move(ExecutorState.IDLE)
        if body.get("recycle"):
            slot.recycle = body["recycle"]
            log.info("executor %s leaves after task %s: %s (rss %.0f MB)", slot.pid, inf.id,
                     body["recycle"], slot.rss_mb)
            if slot.state is not ExecutorState.STOPPING:
                slot.move(ExecutorState.STOPPING)
            self.top_up()
        self.owner.complete(inf, body["ok"], body.get("result"), body.get("error"),
                            body.get("retry_delay_s"), bool(body.get("retryable", True)))
        self.owner.schedule_turn()

    def _on_eof(self, slot: Slot) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(slot.read_fd)
        self.pipes.forget(slot)
        for fd in (slot.read_fd, slot.write_fd, slot.steal_fd):
            os.close(fd)
        slot.eof = True
        if slot.state is not ExecutorState.STOPPING:
            slot.move(ExecutorState.STOPPING)
        # Tasks that only waited in the pipe never started: back to pending now,
        # attempt not counted, so another executor can take them at once.
        for inf in [i for i in slot.inflight if i.started_at is None]:
            slot.inflight.remove(inf)
            self.inflight.pop(inf.id, None)
            self.owner.release(inf)
        self.top_up()
        if slot.exit_status is not None or slot.pid is None:
            self._bury(slot)
        else:
            loop.call_later(STATUS_WAIT_S, self._bury, slot)

    def _bury(self, slot: Slot) -> None:
        """Record why a dead executor's running task ended; forget the executor.
        After a crash, kill what is left of its process group."""
        if slot.state is ExecutorState.DEAD:
            return
        status = slot.exit_status or "unknown"
        restart = slot.kill_reason or slot.recycle or "crash"
        for inf in list(slot.inflight):
            self.inflight.pop(inf.id, None)
            if slot.kill_reason == "cancelled" and inf.cancelled_by:
                continue  # the cancel request already recorded it and answered waiters
            if slot.kill_reason == "shutdown":
                self.owner.release(inf)
            elif slot.kill_reason == "timeout":
                limit = inf.timeout_s + self.settings.kill_grace_s
                self.owner.complete(inf, False, None, {
                    "reason": "timeout", "traceback": "",
                    "message": f"timeout: hard time limit of {limit:g} s passed; executor "
                               f"{slot.pid} and its process group were killed"}, None, True)
            else:
                self.owner.complete(inf, False, None, {
                    "reason": "crash", "traceback": "",
                    "message": f"crash: {status} (executor pid {slot.pid} died while "
                               f"running the task)"}, None, True)
        slot.inflight.clear()
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
