"""What the request handlers need from the pool: a narrow interface.

``Requests`` (socket ops) and ``Specs`` (checking submitted specs) are handed
the ``Pool`` at run time but know it only through these protocols, so
neither imports ``executor.pool.pool`` and the pool's modules import one way:
``pool`` → ``requests`` → ``specs`` → ``port``.
"""

from __future__ import annotations

from typing import Any, Protocol

from config import Settings
from executor.pool.fleet import Fleet
from executor.pool.slots import Inflight
from executor.store import Store, TaskRecord
from executor.store.records import NewTask
from metrics import PoolMetrics


class SpecSource(Protocol):
    """What checking a submitted spec reads: the registered kinds and the defaults."""

    @property
    def settings(self) -> Settings:
        """The pool's current settings (``default_max_retries``, ``default_timeout_s``)."""

    @property
    def manifest(self) -> dict[str, dict[str, Any]]:
        """Registered kinds and their options, from the current template."""

    def learn_concurrency(self, kind: str, concurrency: int) -> None:
        """A kind without a manifest entry (an ``add_task`` function) is an
        ``async def`` one of this concurrency (0: ``async_concurrency``)."""


class PoolPort(SpecSource, Protocol):
    """What the request handlers use of the pool, and nothing more."""

    @property
    def store(self) -> Store:
        """The store (reads, and the power-safe ``cancel`` and ``retry``; other writes
        go through ``enqueue`` and the turn)."""

    @property
    def fleet(self) -> Fleet:
        """The executors: their ``slots`` (what ``census`` shows) and their
        ``handout`` (to find, take back or cancel a handed-out task)."""

    @property
    def metrics(self) -> PoolMetrics:
        """The pool's metrics."""

    def schedule_turn(self) -> None:
        """Run the end-of-turn work (commit, dispatch) soon."""

    def enqueue(self, tasks: list[NewTask]) -> list[TaskRecord]:
        """Store ``tasks`` in the current turn's transaction; see ``Pool.enqueue``."""

    def outcome_pending(self, task_id: str) -> str | None:
        """The status an outcome heard this turn will give ``task_id``, if any."""

    def store_start(self, inf: Inflight) -> None:
        """Store ``inf``'s start now if no turn has, before a reply shows it
        running; see ``Pool.store_start``."""

    def schedule_rows(self) -> list[dict[str, Any]]:
        """Each schedule and its slots, for the ``schedules`` op (``Scheduler.rows``)."""

    def note_due(self, when: float) -> None:
        """A task may be due at ``when``: dispatch then."""
