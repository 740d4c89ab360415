"""Writing tasks' starts to the store behind their run, with the pool's turns.

An executor says ``STARTED`` as a task begins; the store need not learn it
at once, since a crash of the pool before it does only gives the attempt
back (``Store.recover``), as for a task that never started. So a start
waits (``add``) and is written with the next turn that writes anything
(``take``), or with a turn of its own ``START_WRITE_S`` later if none comes
sooner, or at once when a reply is about to show the task running
(``write_now``). A task that ends within that time has its start written
with its outcome, in one write. The timer, not a turn of its own at once:
that was one more commit per task while executors idle.

Issue 14 holds here: a start a reply shows (``get``) is in the store first,
and a start is written whether or not the timer fired late or early (the
timer's firing, not a clock comparison, makes the starts due).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from executor.pool.fleet import Fleet
from executor.pool.slots import Inflight
from executor.store import Outcome, Store

START_WRITE_S = 0.05  # a start waits at most this long for a turn to write it

Start = tuple[str, float, int | None]  # (task id, started_at, lease token), as Store.started


class StartsOwner(Protocol):
    """What writing starts needs from the pool."""

    store: Store
    fleet: Fleet
    stopping: bool

    def schedule_turn(self) -> None:
        """Run the end-of-turn work (its transaction) soon."""


class StartWrites:
    """The starts the store has not learnt yet, oldest first. Used from the
    pool's loop only."""

    def __init__(self, pool: StartsOwner) -> None:
        self.pool = pool
        self._waiting: list[Start] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, inf: Inflight) -> None:
        """``inf`` started (``inf.started_at`` is set): write it with a turn
        within ``START_WRITE_S``, or sooner (see the module's docstring)."""
        assert inf.started_at is not None
        self._waiting.append((inf.id, inf.started_at, inf.token))
        self._arm()

    def _arm(self) -> None:
        if self._timer is None and self._waiting:
            self._timer = asyncio.get_running_loop().call_later(START_WRITE_S, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._waiting:
            self.pool.schedule_turn()

    def due(self) -> bool:
        """Whether starts wait that need a turn of their own: the timer has
        fired (not a clock comparison: the loop may fire a timer a little
        early, and a start found "not old enough" then was never written), or
        the pool is stopping."""
        return bool(self._waiting) and (self.pool.stopping or self._timer is None)

    def take(self, finishes: list[tuple[Outcome, Inflight]]) -> list[Start]:
        """The starts a turn writes: every one waiting, except those of tasks
        ending this turn (``finishes``: the outcome carries them). Not only the
        old ones: a start the pool reports (``get``) but the store lacks would
        be given its attempt back by a crash, though the task really ran.
        Those taken no longer wait; give them back with ``put_back`` if the
        turn is rolled back."""
        if not self._waiting:
            return []
        ending = {o.id for o, _ in finishes}
        now = [start for start in self._waiting if start[0] not in ending]
        self._waiting = []
        return now

    def put_back(self, starts: list[Start]) -> None:
        """The turn that took ``starts`` was rolled back: they wait again, first."""
        self._waiting[:0] = starts

    def stored(self, starts: list[Start]) -> None:
        """The turn that wrote ``starts`` committed: replies may show them."""
        for task_id, _, _ in starts:
            entry = self.pool.fleet.handout.inflight.get(task_id)
            if entry is not None:
                entry[1].start_stored = True

    def write_now(self, inf: Inflight) -> None:
        """Write the start of ``inf`` now, if no turn has: a reply about to show
        the task running must show what a crash keeps (a start the store lacks
        gets its attempt back). One small commit outside a turn, as
        ``Store.reschedule``; blocks; raises the store's error. Nothing to do
        if the start is stored already or the task has not started."""
        if inf.start_stored or inf.started_at is None:
            return
        # Fenced like every write about a running task: a start stamped on
        # another pool's later claim of it would cost that claim its attempt.
        self.pool.store.started([(inf.id, inf.started_at, inf.token)])
        self._waiting = [start for start in self._waiting if start[0] != inf.id]
        inf.start_stored = True
