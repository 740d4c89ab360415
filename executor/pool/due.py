"""When the pool's next claim runs: at the end of this turn, or when a task comes due.

The pool claims due tasks at the end of a turn, and only while a claim may
find one (``Due.maybe``): after a submission it could not hand out at once,
a task put back, a wake-up from another pool, a group's next call. A claim
that finds fewer tasks than it had room for clears ``maybe`` and tells
``Due`` when the store's next task comes due (``caught_up``); ``Due`` then
wakes the pool at that moment with a loop timer, not at the next tick:
back-off waits and delays would otherwise be up to ``TICK_S`` late, by a
different amount each time (enough to reorder two consecutive back-off
waits). The tick also checks the time (``tick``), in case the timer is late.

Used from the pool's loop only; it talks to the pool through one callback,
``schedule_turn``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

DUE_TIMER_MAX_S = 3600.0  # a far-off due time re-arms its timer on the way


class Due:
    """Whether a claim may find due tasks (``maybe``), and when one comes due
    (``next_at``, by ``clock``, seconds since the epoch; ``None``: not known).

    Contract: once ``clock()`` reaches ``next_at``, ``maybe`` is set and a
    turn scheduled, by the timer or the next ``tick``, whichever is first; a
    timer that fires before ``next_at`` (the loop may round a delay down)
    arms itself again, it never drops the time.
    """

    def __init__(self, schedule_turn: Callable[[], None],
                 clock: Callable[[], float] = time.time) -> None:
        """``schedule_turn``: run the pool's end-of-turn work (and its claim)
        soon. ``clock``: the time due times are in (tests pass a fake one)."""
        self.maybe = True
        self.next_at: float | None = None
        self._schedule_turn = schedule_turn
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None

    def now(self) -> None:
        """Tasks may be due now: claim with a turn soon."""
        self.maybe = True
        self._schedule_turn()

    def note(self, when: float) -> None:
        """Something becomes due at ``when``: make sure a claim runs then."""
        if when <= self._clock():
            self.now()
        elif self.next_at is None or when < self.next_at:
            self.next_at = when
            self._arm()

    def caught_up(self, next_at: float | None) -> None:
        """A claim took every task that was due: none may be until something
        changes (``maybe`` is cleared) or ``next_at`` comes, the store's next
        due time (``None``: no task waits). Re-arms the timer if that changed."""
        self.maybe = False
        if next_at != self.next_at:
            self.next_at = next_at
            self._arm()

    def may_be_due(self, now: float) -> bool:
        """Whether a claim at ``now`` may find a stored task due."""
        return self.maybe or (self.next_at is not None and self.next_at <= now)

    def tick(self, now: float) -> None:
        """The pool's tick at ``now``: a due time passed and not yet claimed for
        is claimed for now, whatever became of its timer."""
        if self.next_at is not None and now >= self.next_at:
            self.next_at = None
            self.now()

    def _arm(self) -> None:
        """Wake when ``next_at`` comes. A time already past is left to the tick
        (a due task held back by its group would spin)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.next_at is None:
            return
        delay = self.next_at - self._clock()
        if delay > 0:  # +1 ms: the loop's timers may round down to the millisecond
            self._timer = asyncio.get_running_loop().call_later(
                min(delay + 0.001, DUE_TIMER_MAX_S), self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self.next_at is not None and self._clock() >= self.next_at:
            self.next_at = None
            self.now()
        else:
            self._arm()
