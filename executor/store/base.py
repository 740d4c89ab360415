"""The store contract: what the pool needs from any backend.

A single-writer store (SQLite) has one pool as its only writer; a shared
store (PostgreSQL, ``shared = True``) has one pool per host. Every method is
synchronous and returns when its change is durable (committed). Methods
that name a missing task return ``None`` (or skip it, for batch methods);
they never raise for it.

Status transitions a store must enforce (anything else is refused):

    pending/retrying --claim--> running --finish--> succeeded | failed
    running --reschedule--> retrying (attempt counted) | pending (release: not counted)
    pending/retrying --cancel--> cancelled      running --cancel(force)--> cancelled
    running (lease expired / recover) --> pending, or failed 'lost' if out of attempts
    failed/cancelled --retry--> pending (attempts reset: the same task runs again)

Leases and fencing. A claim gives the task a lease until ``lease_expires_at``
on the store's lease clock: the caller's ``now`` for a single-writer store,
the database server's clock for a shared one (a host's ``now`` can then
neither shorten nor expire another pool's lease). A shared store also gives
every claim a fresh ``lease_token``; ``started``, ``renew``, ``finish``,
``reschedule`` and a forced ``cancel`` that carry a token change nothing
unless the task still holds it, so a pool paused past its lease cannot
overwrite the run that replaced it. A ``None`` token is not checked (a
single-writer store's records have none: nobody else can claim its tasks).

The records, statuses and errors it names are in ``executor.store.records``.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from executor.store.records import (
    NewTask,
    Outcome,
    ScheduleSlot,
    TaskRecord,
)


class Listener(Protocol):
    """A shared store's notices that other pools made work due."""

    def fileno(self) -> int:
        """The file descriptor to watch for readability."""
        ...

    def drain(self) -> bool:
        """Read without blocking; True if another pool's notice arrived.
        Raises StoreError once the listener's connection is lost."""
        ...

    def close(self) -> None:
        """Release it. Idempotent."""
        ...


class Store(Protocol):
    """A task store. See the module docstring for the transitions."""

    shared: bool  # several pools write it: leases by the database's clock, fencing

    def enqueue(self, tasks: Sequence[NewTask], now: float, *, sync: bool = True
                ) -> list[TaskRecord]:
        """Insert ``tasks`` in one transaction, all or nothing; durable on return,
        or with ``sync=False`` only once ``sync()`` has returned after it.

        A task whose ``idempotency_key`` is already known is not inserted: the
        existing record is returned in its place. Records come back in input order.
        """
        ...

    def enqueue_and_claim(self, tasks: Sequence[NewTask], now: float, n: int, owner: str,
                          lease_s: float) -> tuple[list[TaskRecord], list[TaskRecord]]:
        """``enqueue(tasks, now, sync=False)``, claiming up to ``n`` of the tasks
        it inserts in the same write: those go in already ``running``, as
        ``claim`` would leave them, so they are written once instead of twice.

        Claimed are inserted tasks that are due (``not_before <= now``) and
        not behind an earlier unfinished task of their group (in the store or
        in ``tasks``); by priority, then input order. The caller promises that
        no stored task is due (the store does not look), else those would
        be overtaken. Returns ``enqueue``'s records (the claimed ones as they
        were before the claim: ``pending``) and the claimed records, as
        ``claim`` returns them.
        """
        ...

    def claim(self, n: int, now: float, owner: str, lease_s: float) -> list[TaskRecord]:
        """Move up to ``n`` due tasks to ``running`` under a lease and return them.

        Due: status pending or retrying, ``not_before <= now``, and no earlier
        unfinished task in the same group. Order: priority (higher first),
        then submission order. ``attempts`` is incremented; ``started_at`` is
        cleared until ``started`` records the start (a claimed task may wait
        in an executor's pipe first). Durable on return.
        """
        ...

    def started(self, starts: Sequence[tuple[str, float, int | None]]
                ) -> builtins.list[str]:
        """Record ``(id, started_at, token)`` for running tasks that really
        started (``token`` None: unfenced); other ids (and stale tokens) are skipped.
        Until then ``recover`` treats a claimed task as never started. Returns
        the ids recorded. Durable on return (or with the enclosing batch)."""
        ...

    def renew(self, leases: Sequence[tuple[str, int | None]], owner: str, now: float,
              lease_s: float) -> builtins.list[str]:
        """Extend, in one statement, the leases ``owner`` holds on the
        ``(id, token)`` running tasks to ``lease_s`` from now on the lease
        clock (``now`` for a single-writer store, the server's for a shared
        one). Returns the ids renewed: any other is no longer this claim's
        (swept, cancelled, claimed again) and may run elsewhere."""
        ...

    def finish(self, outcomes: Sequence[Outcome]) -> list[TaskRecord]:
        """Record the end of running tasks in one transaction; skip ids not
        running and outcomes whose ``token`` is stale. Returns the changed
        records."""
        ...

    def reschedule(self, task_id: str, not_before: float, *, error: dict[str, Any] | None,
                   count_attempt: bool, token: int | None = None) -> TaskRecord | None:
        """Put a running task back: ``retrying`` (attempt kept) or, with
        ``count_attempt=False``, ``pending`` with the claim's attempt undone
        (it never started). Returns ``None`` if the task is not running (or
        ``token`` is stale)."""
        ...

    def cancel(self, task_id: str, by: str, now: float, *, force: bool = False,
               token: int | None = None) -> TaskRecord | None:
        """Cancel a pending or retrying task (or a running one with ``force``,
        only while it holds ``token`` if one is given).

        Returns the record after the call: its status says whether it was
        cancelled (a finished task comes back unchanged). ``None`` if missing.
        """
        ...

    def retry(self, task_ids: Sequence[str], now: float) -> builtins.list[TaskRecord]:
        """Put failed or cancelled tasks back to run, as the same tasks: status
        ``pending``, ``attempts`` 0, due at ``now``; ``started_at``,
        ``finished_at``, ``result``, ``error``, ``progress``, ``cancelled_by``
        and the lease cleared. ``payload`` and every other field are kept, so
        the call that runs is the one stored. Ids that are missing, unfinished
        or succeeded are skipped (and a repeated id counts once). One
        transaction; durable on return, power loss included, like
        ``enqueue``: it accepts work. Returns the changed records, without
        payload."""
        ...

    def failed_ids(self, *, kind: str | None = None, finished_after: float | None = None,
                   finished_before: float | None = None, limit: int = 100
                   ) -> builtins.list[str]:
        """Ids of up to ``limit`` failed tasks, of ``kind`` if given, with
        ``finished_after <= finished_at < finished_before`` (each bound if
        given); the oldest failure first. Reads only."""
        ...

    def get(self, task_id: str) -> TaskRecord | None:
        """The task's record, or ``None``."""
        ...

    def list(self, *, status: str | None = None, kind: str | None = None, limit: int = 50,
             cursor: str | None = None) -> tuple[list[TaskRecord], str | None]:
        """A page of records, newest first, and the cursor of the next page (or
        ``None``). Their ``payload`` is ``b""``: pages never carry the calls."""
        ...

    def counts(self) -> dict[str, int]:
        """Number of tasks in each status (every status present, zeros included)."""
        ...

    def next_due(self) -> float | None:
        """Earliest ``not_before`` among pending/retrying tasks, or ``None`` if there are none."""
        ...

    def recover(self, now: float, owner: str | None = None, *, everything: bool = False
                ) -> builtins.list[TaskRecord]:  # ``list`` here is the method above
        """Return running tasks whose lease expired on the lease clock (all of
        ``owner``'s, if given; every running task with ``everything``, which
        only a single-writer store's pool may ask, at its start, and a shared
        store refuses) to ``pending``; concurrent recovers change a task once. One that never
        started (no ``started`` call since its claim) gets its attempt back;
        one that did keeps it, and ends ``failed`` with reason ``lost`` if it
        has no attempts left. Returns the records changed."""
        ...

    def purge(self, older_than: float) -> int:
        """Delete finished tasks whose ``finished_at`` is before ``older_than``;
        return the count."""
        ...

    def open_listener(self) -> Listener | None:
        """A new Listener for a shared store, ``None`` for a single writer's
        (it knows of every change itself). Raises StoreError if it cannot."""
        ...

    def take_slot(self, schedule: str, slot: float, now: float) -> bool:
        """Take ``slot`` (seconds since the epoch) of ``schedule``: record it as
        the schedule's last slot if it is later than the one stored, or none is
        stored, and return True; else change nothing and return False.

        This is how a slot runs once however many pools (or restarts) try,
        with no leader: each pool takes a slot before it enqueues its task, in
        the same transaction, and only the one whose call returned True
        enqueues. Two concurrent callers must not both get True (a backend
        with concurrent writers makes the second wait for the first's commit
        and then see its row). The row outlives purged tasks, so a slot is
        never taken twice. ``now`` is stored as ``taken_at``. Durable on
        return (or with the enclosing batch)."""
        ...

    def slot_task(self, schedule: str, slot: float, task_id: str) -> None:
        """Record ``task_id`` as the run of ``schedule``'s ``slot`` (kept as
        ``task_id`` / ``task_slot`` until a later run's), if ``slot`` is still
        the schedule's last slot taken; else nothing. Durable on return (or
        with the enclosing batch)."""
        ...

    def schedule_slots(self) -> dict[str, ScheduleSlot]:
        """Every schedule's row, by schedule name (schedules never taken are absent)."""
        ...

    def sync(self) -> None:
        """Make every committed change durable against power loss. Blocking,
        and safe to call from another thread than the writer's."""
        ...

    def batch(self) -> AbstractContextManager[None]:
        """Group the write calls made inside into one transaction, committed on
        exit; an exception leaving the block rolls everything back. Each call
        inside is still all or nothing on its own: one that raises leaves no
        trace, and the batch may go on. Only NORMAL-sync writes (``enqueue``
        with ``sync=False``, not ``cancel``): the caller ``sync()``s after the
        block before it acknowledges anything. The pool wraps each loop turn's
        submissions, outcomes and claims in one batch."""
        ...

    def close(self) -> None:
        """Release the store's resources. Idempotent."""
        ...
