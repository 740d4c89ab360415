"""Which executor holds which task: handing claimed tasks out, taking waiting
ones back, and cancelling running ones.

A claimed task is placed on an executor with room for it
(``executor.pool.capacity``) and waits in that executor's task pipe until
the executor starts it. Within a pool turn the tasks are only counted
(``hand_out``); they reach the pipes once the turn's claim commits
(``send``), or are forgotten if it was rolled back (``undo``).

A task that waits too long behind slow ones is taken back (``steal``: read
back out of the pipe under its ``flock``, atomically with the executor's own
reads) and goes back to pending with no attempt counted. A running task is
cancelled with a ``CANCEL`` frame on the executor's control pipe if it is an
``async def`` one, else by killing its executor.

``inflight`` maps each task id held by an executor (waiting or running) to
that executor and the task; ``quarantine`` holds the tasks that run alone
(see ``executor.pool.charges``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any, Protocol

from config import Settings
from executor.pool import capacity
from executor.pool.capacity import Concurrency
from executor.pool.pipes import Pipes
from executor.pool.slots import ExecutorState, Inflight, Slot
from executor.store import TaskRecord
from executor.wire.protocol import FrameReader, FrameType, encode

log = logging.getLogger("offload.pool")

LEASE_TAKEN = "lease lost"  # cancelled_by of a run whose claim the store gave to a later one
STEAL_AFTER_S = 0.1  # take waiting tasks back from an executor that started none for this long
REBALANCE_AFTER_S = 0.02  # ... or for this long while another executor has no task


class HandoutOwner(Protocol):
    """What the hand-out needs from the pool."""

    @property
    def settings(self) -> Settings:
        """The current settings (``async_concurrency``)."""

    def release(self, inf: Inflight) -> None:
        """A task that never started goes back to pending, attempt not counted."""


class Executors(Protocol):
    """What the hand-out needs of the executors (the ``Fleet``)."""

    @property
    def slots(self) -> Mapping[int, Slot]:
        """Every executor not yet buried, by slot id."""

    @property
    def manifest(self) -> Mapping[str, Mapping[str, Any]]:
        """Registered kinds and their options (a kind's concurrency)."""

    def kill(self, slot: Slot, reason: str) -> None:
        """Kill ``slot``'s executor (its end is heard later, as its pipe's EOF)."""


class Handout:
    """The tasks handed to executors, and the ones given out this turn but not sent."""

    def __init__(self, owner: HandoutOwner, executors: Executors, pipes: Pipes) -> None:
        self.owner = owner
        self.executors = executors
        self.pipes = pipes
        self.inflight: dict[str, tuple[Slot, Inflight]] = {}
        self.concurrency = Concurrency()
        self.quarantine: set[str] = set()  # task ids that run alone (see ``charges``)
        self.starved = False  # claimed tasks fitted no executor: only empty ones get more
        # Given out in the current turn, not yet written (see hand_out).
        self._unsent: dict[int, list[bytes]] = {}
        self._assigned: list[tuple[Slot, Inflight]] = []
        self._last_claimed = 1  # concurrency of the last task handed out: room is counted with it

    def concurrency_of(self, kind: str, task_id: str) -> int:
        """The concurrency a task is placed with (1 in quarantine)."""
        return self.concurrency.of(kind, self.executors.manifest,
                                   self.owner.settings.async_concurrency,
                                   task_id in self.quarantine)

    def room(self, live: list[Slot]) -> list[tuple[Slot, int]]:
        """``places(live)``, or ``[]`` when no executor of ``live`` needs tasks
        yet (claims are batched: an executor is refilled when few tasks wait
        in its pipe)."""
        if not any(capacity.wants_more(s, capacity.guess(s, self._last_claimed))
                   for s in live):
            return []
        return self.places(live)

    def places(self, live: list[Slot], concurrency: int | None = None
               ) -> list[tuple[Slot, int]]:
        """``(slot, free places)`` of every executor in ``live``, counted for
        tasks of ``concurrency`` (default: each executor's own, or the last
        claimed task's for an empty one). After a claim that fitted nowhere
        (``starved``) only empty executors count, until one takes a task."""
        out = []
        for s in live:
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
        pipes only with ``send``, once the claim is committed; ``undo``
        forgets them if it was rolled back instead."""
        placer = capacity.Placer([slot for slot, _ in room])
        frames = self._unsent
        left: list[TaskRecord] = []
        now = time.monotonic()
        for rec in claimed:
            solo = rec.id in self.quarantine
            c = self.concurrency_of(rec.kind, rec.id)
            desc = {"id": rec.id, "kind": rec.kind, "payload": rec.payload, "ref": rec.ref,
                    "attempt": rec.attempts, "max_retries": rec.max_retries,
                    "timeout_s": rec.timeout_s, "concurrency": c}
            if solo:
                desc["solo"] = True
            frame = encode(FrameType.RUN, desc)
            slot = placer.place(c, len(frame))
            if slot is None:
                left.append(rec)
                continue
            self._last_claimed = c
            if rec.id in self.inflight:
                self._give_up_earlier_claim(rec.id)
            inf = Inflight(rec.id, rec.kind, rec.attempts, rec.max_retries, rec.timeout_s,
                           rec.created_at, rec.not_before, token=rec.lease_token,
                           concurrency=c, solo=solo, size=len(frame))
            slot.waiting.append(inf)
            slot.last_busy = now
            self.inflight[rec.id] = (slot, inf)
            self._assigned.append((slot, inf))
            frames.setdefault(slot.slot_id, []).append(frame)
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

    def unlist(self, inf: Inflight) -> None:
        """``inf`` left its executor: forget it, unless the id is another
        (later) claim's by now (``_give_up_earlier_claim``)."""
        entry = self.inflight.get(inf.id)
        if entry is not None and entry[1] is inf:
            del self.inflight[inf.id]

    def send(self) -> None:
        """Write the tasks given out since the last call to their pipes."""
        frames, self._unsent, self._assigned = self._unsent, {}, []
        for slot_id, parts in frames.items():
            slot = self.executors.slots.get(slot_id)
            if slot is not None:  # one that ended meanwhile: its EOF released them
                self.pipes.write(slot, b"".join(parts))

    def undo(self) -> None:
        """Forget the tasks given out since the last ``send`` (their claim was
        rolled back): they never reach a pipe."""
        for slot, inf in self._assigned:
            if inf in slot.waiting:
                slot.waiting.remove(inf)
            self.unlist(inf)
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
            self.unlist(inf)
            self.owner.release(inf)

    def take_back_stalled(self, slots: list[Slot], live: list[Slot]) -> None:
        """``steal`` from each of ``slots`` that is stopping, or runs tasks but
        started none for ``STEAL_AFTER_S`` (``REBALANCE_AFTER_S`` while an
        executor of ``live`` has no task at all). Called periodically."""
        mono = time.monotonic()
        someone_empty = any(s.count == 0 for s in live)
        for slot in slots:
            if slot.waiting:
                stalled = mono - slot.last_progress
                if slot.state is ExecutorState.STOPPING or (slot.running and (
                        stalled > STEAL_AFTER_S
                        or (someone_empty and stalled > REBALANCE_AFTER_S))):
                    self.steal(slot)

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
        when it starts (``stop_cancelled`` then), so the tasks before it are spared.
        """
        entry = self.inflight.get(task_id)
        if entry is None:
            return False
        slot, inf = entry
        inf.cancelled_by = by
        if inf.started_at is not None:
            self.stop_cancelled(slot, inf)
        return True

    def stop_cancelled(self, slot: Slot, inf: Inflight) -> None:
        """Stop ``inf``, cancelled while it runs in ``slot``: a ``CANCEL`` for an
        ``async def`` task, else (or if the control pipe is full or gone) kill
        the executor."""
        if inf.is_async and slot.control_fd >= 0:
            inf.cancel_sent_at = time.time()
            try:
                os.write(slot.control_fd, encode(FrameType.CANCEL, {"id": inf.id}))
                return
            except OSError:
                pass  # its control pipe is full or gone: kill, as for a def task
        self.executors.kill(slot, "cancelled")

    def forget(self, task_id: str) -> None:
        """A task ended for good (its final status is stored): leave quarantine."""
        self.quarantine.discard(task_id)
