"""The group commit: at the end of a loop turn, one transaction for all of it.

What reaches the pool during one turn of its loop (submissions, tasks'
starts and outcomes, reschedules the store could not take when they
happened, the due slots of schedules) waits here; at the end of the turn
(``schedule``, then ``flush`` once) one transaction writes it all and claims
the due tasks that fit in the executors. Only once it commits do claimed
tasks reach the executors and long-polls hear of outcomes; submitters are
answered once it is on disk (``FsyncThread``). If it is rolled back, nothing
of the turn happened: submitters get the error, and the starts, outcomes
and reschedules are written again by a later turn, ``RETRY_TURN_S`` on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol

from executor.pool.due import Due
from executor.pool.fleet import Fleet
from executor.pool.fsync import Acknowledge, FsyncThread
from executor.pool.requests import Requests, Submission
from executor.pool.schedules import Scheduler
from executor.pool.slots import Inflight
from executor.pool.starts import Start, StartWrites
from executor.store import Outcome, Store, TaskRecord
from metrics import PoolMetrics

log = logging.getLogger("offload.pool")

RETRY_TURN_S = 0.5  # after a turn the store refused (disk full, I/O error)
REFUSED_LOG_S = 5.0  # refused turns are logged at most this often

# (task, not_before, error, count_attempt): a reschedule for the next turn.
Reschedule = tuple[Inflight, float, dict[str, Any] | None, bool]


class TurnOwner(Protocol):
    """What the turn needs from the pool: the parts whose work it commits,
    and the pool's claim."""

    store: Store
    stopping: bool
    metrics: PoolMetrics
    requests: Requests
    schedules: Scheduler
    fleet: Fleet
    starts: StartWrites
    due: Due

    def dispatch(self) -> None:
        """Claim the due tasks that fit the executors, inside the transaction."""


class Turn:
    """The work that waits for the end of the turn, and its transaction.
    Used from the pool's loop only."""

    def __init__(self, pool: TurnOwner) -> None:
        self.pool = pool
        self.fsync = FsyncThread(pool.store.sync)
        self._scheduled = False
        self._finishes: list[tuple[Outcome, Inflight]] = []
        self._reschedules: list[Reschedule] = []
        self._submitted: Counter[str] = Counter()  # tasks stored this turn, by kind
        self._refused_turns = 0
        self._refused_logged = -REFUSED_LOG_S

    def schedule(self) -> None:
        """Run ``flush`` once, soon (at the end of this turn of the loop)."""
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def finish(self, outcome: Outcome, inf: Inflight) -> None:
        """Write ``inf``'s final ``outcome`` (with its start) with this turn."""
        self._finishes.append((outcome, inf))
        self.schedule()

    def outcome_pending(self, task_id: str) -> str | None:
        """The final status of ``task_id`` if its outcome arrived and waits for
        the turn's write, else ``None``: a cancel must not overwrite it."""
        for outcome, _ in self._finishes:
            if outcome.id == task_id:
                return outcome.status
        return None

    def reschedule_later(self, reschedule: Reschedule) -> None:
        """A reschedule the store could not take when it happened: written
        with the next turn that writes."""
        self._reschedules.append(reschedule)

    def count_submitted(self, kinds: Iterable[str]) -> None:
        """Tasks of ``kinds`` stored in this turn: counted once it commits."""
        self._submitted.update(kinds)

    def flush(self) -> None:
        """End of a loop turn: one transaction stores the turn's submissions,
        starts, outcomes and claims. No transaction at all when there is
        nothing to write and no claim to make."""
        self._scheduled = False
        pool = self.pool
        submits = pool.requests.take_submits()
        slots_due = not pool.stopping and pool.schedules.due()
        if not submits and not self._finishes and not pool.starts.due() and (
                not self._reschedules) and not slots_due and (
                pool.stopping or not pool.due.maybe or not pool.fleet.room()):
            return  # nothing to write: no transaction at all
        acknowledge = None
        answered = False
        finishes, self._finishes = self._finishes, []
        starts = pool.starts.take(finishes)
        reschedules, self._reschedules = self._reschedules, []
        finished: list[TaskRecord] = []
        fenced: list[tuple[str, str]] = []  # (task id, what): writes the store refused
        try:
            with pool.store.batch():
                if submits:
                    acknowledge = pool.requests.store_submits(submits)
                    answered = True
                if starts:
                    done = set(pool.store.started(starts))
                    fenced += [(s[0], "its start") for s in starts if s[0] not in done]
                for inf, not_before, error, count in reschedules:
                    if pool.store.reschedule(inf.id, not_before, error=error,
                                             count_attempt=count, token=inf.token) is None:
                        fenced.append((inf.id, "its reschedule"))
                    pool.due.maybe = True
                if finishes:
                    finished = pool.store.finish([o for o, _ in finishes])
                    if any(rec.group_id is not None for rec in finished):
                        pool.due.maybe = True  # the next call of a group may run now
                    ended = {rec.id for rec in finished}
                    fenced += [(o.id, "its outcome") for o, _ in finishes if o.id not in ended]
                if slots_due:
                    pool.schedules.enqueue_due()
                pool.dispatch()
        except Exception as exc:
            self._reschedules[:0] = reschedules
            self._rolled_back(exc, submits if not answered else [], acknowledge,
                              starts, finishes)
            return
        pool.starts.stored(starts)
        for task_id, what in fenced:
            dropped(task_id, what)
        pool.fleet.handout.send()
        if slots_due:
            pool.schedules.committed()
        for kind, n in self._submitted.items():
            pool.metrics.task_submitted(kind, n)
        self._submitted.clear()
        for rec in finished:
            pool.metrics.task_finished(rec.kind, rec.status)
            pool.requests.task_finished(rec)
        if acknowledge is not None:
            self.fsync.after_sync(acknowledge)

    def _rolled_back(self, exc: Exception, unanswered: list[Submission],
                     acknowledge: Acknowledge | None, starts: list[Start],
                     finishes: list[tuple[Outcome, Inflight]]) -> None:
        """The turn's transaction failed: undo what it did in memory, answer
        its submitters, and write its starts and outcomes again later."""
        pool = self.pool
        self._refused_turns += 1
        now = time.monotonic()
        if now - self._refused_logged >= REFUSED_LOG_S:  # a database away refuses every turn
            log.error("the store refused this turn's writes (%d turn(s) refused since the last "
                      "such message), nothing of it is stored; trying again in %.1f s: %s",
                      self._refused_turns, RETRY_TURN_S, exc)
            self._refused_logged, self._refused_turns = now, 0
        pool.fleet.handout.undo()
        pool.schedules.rolled_back()
        self._submitted.clear()
        pool.starts.put_back(starts)
        self._finishes[:0] = finishes
        for conn, req_id, _, _ in unanswered:
            # The detail (a file path, SQLite's words) is in the log above,
            # not in the answer: it may reach HTTP clients.
            conn.fail(req_id, "store_unavailable", "the store could not write the tasks, "
                      "nothing was stored; retry shortly (the pool's log says why)")
        if acknowledge is not None:
            acknowledge(exc)  # rolled back: nothing of theirs is stored
        pool.due.maybe = True
        asyncio.get_running_loop().call_later(RETRY_TURN_S, self.schedule)

    async def close(self) -> None:
        """Write what waits (the pool is stopping), then wait for its fsync."""
        self.flush()
        await self.fsync.close()


def dropped(task_id: str, what: str) -> None:
    """Log a late write about ``task_id`` the store refused (``what``: "its
    start", "its outcome", "its reschedule"): the task's lease is another claim's."""
    log.warning("task %s: %s was not stored: the task is no longer this pool's (its "
                "lease expired or it was cancelled; another pool may run it again), "
                "so the run that replaced this one decides", task_id, what)
