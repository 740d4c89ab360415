"""The pool's tick: what it checks every ``TICK_S`` whatever happens.

Most of the pool's work is driven by events (a request, a frame from an
executor, an executor's end, a timer). The tick catches what no event
announces: executors that stall or outlive their hard limit (``Fleet.watch``),
leases to renew or give up (``LeaseKeeper.tick``), the executors' count
(``Fleet.autoscale``), due schedule slots, a due time whose timer is late
(``Due.tick``), and the purge of finished tasks older than ``result_ttl_s``.
One failing check is logged and the tick goes on at the next one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from config import Settings
from executor.pool.due import Due
from executor.pool.fleet import Fleet
from executor.pool.leases import LeaseKeeper
from executor.pool.schedules import Scheduler
from executor.store import Store, StoreError

log = logging.getLogger("offload.pool")

TICK_S = 0.05


class TickOwner(Protocol):
    """What the tick checks in the pool."""

    settings: Settings
    store: Store
    fleet: Fleet
    leases: LeaseKeeper
    schedules: Scheduler
    due: Due
    stopping: bool
    reloading: bool  # the settings are new, the template not yet

    def schedule_turn(self) -> None:
        """Run the end-of-turn work (commit, claim) soon."""


class Ticker:
    """Runs the pool's periodic checks; ``run`` it as a task on the pool's loop."""

    def __init__(self, pool: TickOwner) -> None:
        self.pool = pool
        self._last_purge = 0.0

    async def run(self) -> None:
        """Tick every ``TICK_S`` until cancelled; never raises otherwise."""
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.tick()
            except Exception:
                log.exception("pool tick failed")

    def tick(self) -> None:
        """One round of the checks (see the module's docstring)."""
        pool = self.pool
        now = time.time()
        pool.fleet.watch(now)
        # First after the executors: a pool that cannot renew must kill its
        # running tasks in time, whatever else in this tick fails.
        pool.leases.tick(time.monotonic())
        if not pool.reloading:  # the settings are new, the template not yet
            pool.fleet.autoscale(self._due_waiting)
        if not pool.stopping and pool.schedules.due():
            pool.schedule_turn()
        pool.due.tick(now)
        self._purge(now)

    def _purge(self, now: float) -> None:
        """Delete finished tasks older than ``result_ttl_s``, every quarter of
        it (between 0.5 and 60 s); a store that cannot is retried later."""
        ttl = self.pool.settings.result_ttl_s
        if now - self._last_purge <= min(60.0, max(0.5, ttl / 4)):
            return
        self._last_purge = now
        try:
            purged = self.pool.store.purge(now - ttl)
        except StoreError as exc:
            log.error("cannot purge finished tasks (trying again later): %s", exc)
            return
        if purged:
            log.info("purged %d finished task(s) older than %g s", purged, ttl)

    def _due_waiting(self) -> bool:
        """Whether a task in the store is due now (it may still wait behind its
        group): asked by the autoscaler when every executor is busy, each
        tick. False when the store cannot say (its database is away): growth
        waits for it; the lease keeper and the turns report the error."""
        try:
            due = self.pool.store.next_due()
        except StoreError:
            return False
        return due is not None and due <= time.time()
