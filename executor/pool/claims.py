"""Claiming due tasks for the executors, inside the turn's transaction.

Two ways, both written in the turn that hands the tasks out:

* claim on insert (``enqueue``): when no stored task is due, the new tasks
  that free places in the executors can take are stored already claimed
  and handed out at once: written once instead of inserted and then claimed;
* the claim at the end of the turn (``dispatch``), while a claim may find
  due tasks (``Due.maybe``): as many as the executors have room for, in
  ``Store.claim``'s order, under this pool's lease.

Claimed tasks reach the pipes only once the turn commits
(``Handout.send``); a claimed task no executor can take beside
what it holds goes back to pending at once, and is claimed again when one
empties.
"""

from __future__ import annotations

import time
from typing import Protocol

from config import Settings
from executor.pool.due import Due
from executor.pool.fleet import Fleet
from executor.pool.schedules import Scheduler
from executor.pool.slots import Slot
from executor.pool.turn import Turn
from executor.store import NewTask, Store, TaskRecord


class ClaimsOwner(Protocol):
    """What claiming needs from the pool."""

    settings: Settings
    store: Store
    fleet: Fleet
    schedules: Scheduler
    due: Due
    turn: Turn
    owner: str  # the pool's name on its leases
    stopping: bool


class Claims:
    """Claims and hands out due tasks. Used from the pool's loop, inside the
    turn's transaction (``Store.batch``) only."""

    def __init__(self, pool: ClaimsOwner) -> None:
        self.pool = pool

    def enqueue(self, tasks: list[NewTask]) -> list[TaskRecord]:
        """Store ``tasks`` (inside the turn's batch) and count them.

        When no stored task is due, those that free places in the executors
        can take are stored already claimed and handed out at once: written
        once instead of inserted and then claimed. The rest are left to the
        claim at the end of the turn.
        """
        pool = self.pool
        now = time.time()
        room = [] if pool.stopping or pool.due.may_be_due(now) else pool.fleet.places(
            concurrency=pool.fleet.handout.concurrency_of(tasks[0].kind, "") if tasks else None)
        capacity = sum(n for _, n in room if n > 0)
        if capacity:
            records, started = pool.store.enqueue_and_claim(tasks, now, capacity, pool.owner,
                                                            pool.settings.lease_s)
            self._hand_out(room, started)
        else:
            records, started = pool.store.enqueue(tasks, now, sync=False), []
        if len(started) < len(records):
            pool.due.maybe = True
        pool.turn.count_submitted(rec.kind for rec in records)  # counted once committed
        return records

    def dispatch(self) -> None:
        """Claim the due tasks that fit the executors and hand them out;
        nothing while the pool stops or no claim may find a due task."""
        pool = self.pool
        if pool.stopping or not pool.due.maybe:
            return
        room = pool.fleet.room()
        capacity = sum(n for _, n in room if n > 0)
        if capacity <= 0:
            return
        now = time.time()
        claimed = pool.store.claim(capacity, now, pool.owner, pool.settings.lease_s)
        if len(claimed) < capacity:
            pool.due.caught_up(pool.store.next_due())
        self._hand_out(room, claimed)

    def _hand_out(self, room: list[tuple[Slot, int]], claimed: list[TaskRecord]) -> None:
        """Give claimed tasks to the executors in ``room`` (no more than fit); they
        reach the pipes once the turn commits (``Handout.send``)."""
        pool = self.pool
        if pool.schedules.active:
            pool.schedules.handed_out(claimed)
        left = pool.fleet.handout.hand_out(room, claimed)
        for rec in left:  # no executor can take it beside what it holds: pending again
            pool.store.reschedule(rec.id, rec.not_before, error=None, count_attempt=False,
                                  token=rec.lease_token)
        if left:
            # Due still, and claimed again once an executor empties (``Handout.starved``
            # keeps the claims to empty executors until then: no spinning).
            pool.due.maybe = True
