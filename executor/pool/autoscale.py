"""How many executors the pool keeps: between ``executors`` and ``executors_max``.

``def`` tasks keep a process each, so for them the executor count follows
the work (Celery's ``--autoscale``, without its habit of killing busy
children when it shrinks):

* **grow** while due tasks wait in the store and every executor of the
  current generation is full (runs a one-at-a-time task, or as many
  ``async def`` tasks as their concurrency allows; none is empty or still
  starting): by as many as there are, doubling the count at each check, up
  to ``executors_max``. ``async def`` tasks rarely fill an executor (100 by
  default): growth is for ``def`` tasks, and for async kinds of a low
  ``concurrency``;
* **shrink** an executor above ``executors`` that had no task for
  ``executor_idle_s``: stopped the graceful way (it has nothing to finish);
  an executor with a task is never chosen.

Both read the settings at each check, so a HUP that changes them applies
at once. Below ``executors`` the fleet tops up at once (``Fleet.top_up``);
``executors_max`` below ``executors`` counts as ``executors``.
"""

from __future__ import annotations

from executor.pool.slots import ExecutorState, Slot


def bounds(executors: int, executors_max: int) -> tuple[int, int]:
    """``(minimum, maximum)`` executor count from the settings."""
    return executors, max(executors, executors_max)


def full(slot: Slot) -> bool:
    """Whether ``slot`` runs all it may: a one-at-a-time task, or as many
    concurrent tasks as the lowest concurrency among them."""
    cap = slot.min_concurrency()
    return cap is not None and len(slot.running) >= cap


def may_grow(live: list[Slot], maximum: int) -> bool:
    """Whether growing could help at all (checked before asking the store
    whether due tasks wait): below the maximum, and every executor full
    (none empty, none starting, none with room for one more task)."""
    return len(live) < maximum and all(
        s.state is not ExecutorState.STARTING and full(s) for s in live)


def grow_by(live: int, maximum: int) -> int:
    """How many executors to add when due tasks wait and every one is busy."""
    return max(0, min(maximum - live, max(1, live)))


def idle_to_stop(live: list[Slot], minimum: int, idle_s: float, now: float) -> list[Slot]:
    """Executors to stop: those with no task for ``idle_s`` (monotonic
    ``now``), longest idle first, never leaving fewer than ``minimum``."""
    idle = sorted((s for s in live if s.count == 0 and s.state is ExecutorState.IDLE
                   and now - s.last_busy >= idle_s), key=lambda s: s.last_busy)
    return idle[:max(0, len(live) - minimum)]
