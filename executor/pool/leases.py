"""The leases of a pool's running tasks: renewal, the sweep, and what a pool
does when it cannot renew.

* Renewal: every ``lease_s / 3`` the pool renews the leases of all its
  handed-out tasks in one statement, each with its claim's fencing token.
  A task whose lease is no longer this pool's (swept after a pause,
  cancelled from another host) is given up: taken back from the pipe, or
  its executor killed without an outcome (the store's record is no longer
  this pool's to write).
* Losing the store: if no renewal has succeeded for nearly ``lease_s``,
  the leases are about to run out and another pool may take the tasks over,
  so this pool kills its running tasks itself rather than let them run
  unowned (shared stores only: a single writer's tasks are nobody else's).
* Sweep (shared stores): every ``SWEEP_S`` (with jitter, so that pools do
  not sweep in step) any pool takes back the tasks whose lease expired by
  the database's clock: another host died or stalled.

All times here are this host's monotonic clock; the store judges leases by
its own (see ``executor.store.base``).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Protocol

from config import Settings
from executor.pool.fleet import Fleet
from executor.store import Store, StoreError
from metrics import PoolMetrics

log = logging.getLogger("offload.pool")

SWEEP_S = 3.0  # mean time between sweeps of expired leases (shared stores)
RENEW_RETRY_S = 1.0  # after a failed renewal
ERROR_LOG_S = 10.0  # a failing store is logged at most this often per kind of work
LEASE_LOST = "lease lost"


class LeaseOwner(Protocol):
    """What the lease keeper needs from the pool."""

    settings: Settings
    store: Store
    fleet: Fleet
    metrics: PoolMetrics
    owner: str

    def wake(self) -> None:
        """Tasks may be due: claim soon."""


class LeaseKeeper:
    """Renews, sweeps and gives up leases for one pool; ``tick`` it often."""

    def __init__(self, pool: LeaseOwner) -> None:
        self.pool = pool
        self._held_until: float | None = None  # when the oldest unrenewed lease may run out
        self._next_renew = 0.0
        self._next_sweep = time.monotonic() + random.uniform(0.5, 1.5) * SWEEP_S
        self._last_error: dict[str, float] = {}

    def tick(self, now: float) -> None:
        """Renew, sweep or give up as due (``now``: ``time.monotonic()``)."""
        pool = self.pool
        lease_s = pool.settings.lease_s
        if not pool.fleet.handout.inflight:
            self._held_until = None
        else:
            if self._held_until is None:  # the first claims since idle: just committed
                self._held_until = now + lease_s
                self._next_renew = now + lease_s / 3
            if now >= self._next_renew:
                self._renew(now, lease_s)
            if pool.store.shared and self._held_until is not None and (
                    now >= self._held_until - min(2.0, lease_s / 10)):
                self._give_up_all(lease_s)
        if pool.store.shared and now >= self._next_sweep:
            self._next_sweep = now + random.uniform(0.5, 1.5) * SWEEP_S
            self.sweep()

    def _renew(self, started: float, lease_s: float) -> None:
        pool = self.pool
        held = {task_id: inf.token for task_id, (_, inf) in pool.fleet.handout.inflight.items()}
        try:
            renewed = set(pool.store.renew(list(held.items()), pool.owner, time.time(), lease_s))
        except StoreError as exc:
            self._next_renew = started + RENEW_RETRY_S
            self._error("renew", f"cannot renew the leases of {len(held)} running task(s); "
                                 f"retrying every {RENEW_RETRY_S:g} s: {exc}")
            return
        self._held_until = started + lease_s
        self._next_renew = started + lease_s / 3
        for task_id in held.keys() - renewed:
            log.warning("task %s: its lease is no longer this pool's (taken back by another "
                        "pool after a pause, or cancelled): giving it up", task_id)
            self.give_up(task_id)

    def give_up(self, task_id: str) -> None:
        """Stop ``task_id`` here without writing its outcome: take it back from
        its executor's pipe, or kill the executor running it."""
        handout = self.pool.fleet.handout
        if task_id in handout.inflight and not handout.take_back(task_id):
            handout.cancel_running(task_id, LEASE_LOST)

    def _give_up_all(self, lease_s: float) -> None:
        ids = list(self.pool.fleet.handout.inflight)
        log.error("no lease renewal has succeeded for %.0f s (lease_s = %g): killing this "
                  "pool's %d running task(s) before their leases run out and another pool "
                  "takes them over", lease_s - min(2.0, lease_s / 10), lease_s, len(ids))
        for task_id in ids:
            self.give_up(task_id)
        self._held_until = None

    def sweep(self) -> None:
        """Take back every task whose lease expired on the store's clock."""
        pool = self.pool
        try:
            recovered = pool.store.recover(time.time())
        except StoreError as exc:
            self._error("sweep", f"cannot sweep expired leases: {exc}")
            return
        if not recovered:
            return
        lost = [r for r in recovered if r.status == "failed"]
        log.warning("took back %d task(s) whose pool stopped renewing their leases "
                    "(%d failed as lost: no attempts left)", len(recovered), len(lost))
        for rec in lost:
            pool.metrics.task_failed_attempt(rec.kind, "lost")
            pool.metrics.task_finished(rec.kind, "failed")
        if len(lost) < len(recovered):
            pool.wake()

    def _error(self, what: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last_error.get(what, -ERROR_LOG_S) >= ERROR_LOG_S:
            self._last_error[what] = now
            log.error("%s", message)
