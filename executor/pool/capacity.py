"""How many tasks an executor may take, and which executor takes which task.

A task's *concurrency* is how many tasks its executor may run at once while
it runs, itself included: 1 for ``def`` tasks and one-at-a-time kinds, the
kind's ``@task(concurrency=N)`` or the ``async_concurrency`` setting for
``async def`` ones. An executor's capacity is the lowest concurrency among
the tasks it holds. Rules of placement (``places``):

* an executor with no task takes any task, up to the task's concurrency
  plus ``PREFETCH`` waiting in its pipe;
* one-at-a-time tasks go only behind one-at-a-time tasks (they wait in the
  pipe and run one after another), concurrent ones only beside concurrent
  ones: a one-at-a-time task never shares an executor;
* ``hold`` (tasks waited too long in this pipe) allows no waiting beyond
  what can start;
* no more than ``PREFETCH_BYTES`` of task frames wait in an executor's pipe
  (``Placer``): a task that would only wait there beyond that stays pending.

The pool does not import task code: it knows a kind's concurrency from the
template's manifest, and for functions handed to ``add_task`` without
``@task`` from what executors report when such a task starts (until then:
one at a time). A task in quarantine (it shared an executor that crashed)
is one-at-a-time whatever its kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from executor.pool.slots import Slot

# Tasks that may wait in an executor's pipe beyond what can start, and how
# few must be left waiting before it is topped up (claims are batched). The
# pipe must not run dry while the pool's turn commits: on PostgreSQL a turn
# waits for a WAL flush and several round trips, and with 16/4 executors of
# short tasks sat idle between turns. Tasks that wait too long are taken
# back (``Handout.steal``), so a deeper pipe costs no starvation.
PREFETCH = 32
REFILL_AT = 16
# And at most this many bytes of frames wait beyond what can start: tasks
# with large arguments overflow the 64 KiB pipe into the pool's memory,
# which this bounds (a task that can start is always handed out).
PREFETCH_BYTES = 1 << 20


class Concurrency:
    """Each kind's concurrency, as the pool knows it."""

    def __init__(self) -> None:
        self._learned: dict[str, int] = {}  # kinds without a manifest entry, from STARTED

    def of(self, kind: str, manifest: Mapping[str, Mapping[str, Any]], default: int,
           solo: bool = False) -> int:
        """The concurrency to place a task of ``kind`` with (``default``: the
        ``async_concurrency`` setting)."""
        if solo:
            return 1
        opts = manifest.get(kind)
        if opts is None:
            return self._learned.get(kind, 1)
        if not opts.get("async"):
            return 1
        own = opts.get("concurrency")
        return int(own) if own else default

    def learn(self, kind: str, manifest: Mapping[str, Any], concurrency: object) -> None:
        """Remember what an executor reported for a kind the manifest lacks
        (bounded: kinds are functions of the deployed code)."""
        if kind not in manifest and isinstance(concurrency, int) and concurrency >= 1:
            self._learned[kind] = concurrency


def places(slot: Slot, concurrency: int) -> int:
    """How many tasks of ``concurrency`` may be handed to ``slot`` now (to
    start, or to wait in its pipe)."""
    return _places(slot.min_concurrency(), slot.count, slot.hold, concurrency)


def _places(cap: int | None, count: int, hold: bool, concurrency: int) -> int:
    if cap is None:
        cap = concurrency
    elif (cap == 1) != (concurrency == 1):
        return 0  # never mix one-at-a-time and concurrent tasks
    else:
        cap = min(cap, concurrency)
    limit = cap if hold else cap + PREFETCH
    return max(0, limit - count)


def wants_more(slot: Slot, concurrency: int) -> bool:
    """Whether ``slot`` should be topped up now: few tasks wait in its pipe
    (claims are batched), and few bytes (a claim ``Placer`` would mostly
    leave over only goes back to pending), and a task of ``concurrency``
    would fit."""
    return (len(slot.waiting) <= REFILL_AT and places(slot, concurrency) > 0
            and slot.waiting_bytes <= PREFETCH_BYTES // 2)


def guess(slot: Slot, default: int) -> int:
    """The concurrency to count ``slot``'s room with before the claimed tasks
    are known: its tasks', or ``default`` (the last claimed task's) when it
    has none."""
    cap = slot.min_concurrency()
    return default if cap is None else cap


class Placer:
    """Places the tasks of one hand-out: each goes to the executor with a
    place for it that has the fewest tasks (an empty executor gets a task
    before a busy one gets another). Each executor's capacity and count are
    read once and kept up to date as tasks are placed, not rescanned."""

    def __init__(self, slots: list[Slot]) -> None:
        self._slots = slots
        self._caps = [slot.min_concurrency() for slot in slots]
        self._counts = [slot.count for slot in slots]
        self._bytes = [slot.waiting_bytes for slot in slots]

    def place(self, concurrency: int, size: int = 0) -> Slot | None:
        """The executor for a task of ``concurrency`` whose frame is ``size``
        bytes (counted as placed), or ``None`` if none has a place."""
        best = -1
        counts = self._counts
        for i, slot in enumerate(self._slots):
            if _places(self._caps[i], counts[i], slot.hold, concurrency) > 0 and (
                    best < 0 or counts[i] < counts[best]) and (
                    self._bytes[i] + size <= PREFETCH_BYTES
                    or _places(self._caps[i], counts[i], True, concurrency) > 0):
                best = i  # room by count, and by bytes unless it can start at once
        if best < 0:
            return None
        cap = self._caps[best]
        self._caps[best] = concurrency if cap is None else min(cap, concurrency)
        counts[best] += 1
        self._bytes[best] += size
        return self._slots[best]
