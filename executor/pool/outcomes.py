"""What the pool does when a handed-out task ends, or never starts.

The fleet reports each task's end (``complete``): a success is written with
the turn; a failure counts as an attempt and is retried after the kind's
back-off (``RetryPolicy``; a ``Retry(delay_s=)`` from the task wins), or
fails for good once its retries are spent or it cannot do better
(``should_retry``). A task that never started (its executor died with it
still in the pipe, or it was taken back) goes back to pending with its
attempt undone (``release``). Every write is fenced by the claim's token:
the store refuses one whose lease went to another claim, and that is logged
(``executor.pool.turn.dropped``), not applied.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from config import Settings
from executor.pool.due import Due
from executor.pool.fleet import Fleet
from executor.pool.retry import RetryPolicy, should_retry
from executor.pool.slots import Inflight
from executor.pool.turn import Turn, dropped
from executor.store import Outcome, Store, StoreError
from metrics import PoolMetrics

log = logging.getLogger("offload.pool")


class OutcomesOwner(Protocol):
    """What recording tasks' ends needs from the pool."""

    settings: Settings
    store: Store
    metrics: PoolMetrics
    fleet: Fleet
    turn: Turn
    due: Due

    @property
    def manifest(self) -> dict[str, dict[str, Any]]:
        """Registered kinds and their options (``retry_backoff_s``, ...)."""


class Outcomes:
    """Records how handed-out tasks end. Used from the pool's loop only."""

    def __init__(self, pool: OutcomesOwner) -> None:
        self.pool = pool

    def complete(self, inf: Inflight, ok: bool, result: bytes | None,
                 error: dict[str, Any] | None, retry_delay_s: float | None,
                 retryable: bool) -> None:
        """A started task ended: succeeded, retried with back-off, or failed.
        A retry is put back in the store now (or with the next turn, if the
        store cannot take it now); a final outcome is written with the turn."""
        pool = self.pool
        now = time.time()
        if inf.started_at is not None:
            pool.metrics.observe_run(inf.kind, now - inf.started_at)
        if ok:
            pool.fleet.handout.forget(inf.id)
            pool.turn.finish(Outcome(inf.id, "succeeded", now, inf.started_at, result,
                                     None, inf.progress, inf.token), inf)
            return
        assert error is not None
        pool.metrics.task_failed_attempt(inf.kind, error.get("reason", "error"))
        if should_retry(inf.attempts, inf.max_retries, retryable):
            delay = (retry_delay_s if retry_delay_s is not None
                     else self.policy(inf.kind).delay_s(inf.attempts))
            self._reschedule(inf, now + delay, error, True)
            pool.metrics.task_retried(inf.kind)
            pool.due.note(now + delay)
            return
        pool.fleet.handout.forget(inf.id)
        pool.turn.finish(Outcome(inf.id, "failed", now, inf.started_at, None, error,
                                 inf.progress, inf.token), inf)

    def release(self, inf: Inflight) -> None:
        """A task that never started goes back to pending, its attempt undone."""
        self._reschedule(inf, inf.not_before, None, False)
        self.pool.due.now()

    def policy(self, kind: str) -> RetryPolicy:
        """The retry back-off for ``kind``: its ``@task`` options, else the settings."""
        settings = self.pool.settings
        opts = self.pool.manifest.get(kind, {})
        base = opts.get("retry_backoff_s")
        cap = opts.get("retry_backoff_max_s")
        return RetryPolicy(settings.retry_backoff_s if base is None else base,
                           settings.retry_backoff_max_s if cap is None else cap)

    def _reschedule(self, inf: Inflight, not_before: float, error: dict[str, Any] | None,
                    count_attempt: bool) -> None:
        """Put a running task back now, or with the next turn if the store
        cannot take it now (its database is away); fenced by the claim's token."""
        try:
            after = self.pool.store.reschedule(inf.id, not_before, error=error,
                                               count_attempt=count_attempt, token=inf.token)
        except StoreError as exc:
            log.warning("task %s: cannot put it back now, trying with the next turn: %s",
                        inf.id, exc)
            self.pool.turn.reschedule_later((inf, not_before, error, count_attempt))
            return
        if after is None:
            dropped(inf.id, "its reschedule")
