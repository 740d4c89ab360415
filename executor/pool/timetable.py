"""Slot arithmetic of a schedule: which slots exist, which are due, which run.

Pure functions of times (seconds since the epoch): no clock, no store, no
process, so every rule here is unit-tested on its own. The slots of a
schedule are the same on every host (multiples of ``every_s`` since the
epoch, or the times of the cron expression in its zone), so hosts whose
clocks differ see the same slots, each a little earlier or later: a clock
changes when a slot is enqueued, never how often.

``plan`` decides, at ``now``, what to take (``Store.take_slot``) and run:

* due slots are those after the last slot taken (or, for a schedule never
  taken, after the moment this pool first saw it) and at most ``now``,
  no older than ``max_delay_s`` (older ones never run);
* ``catch_up="all"``: every due slot runs, the newest ``MAX_CATCH_UP_RUNS``;
* ``"latest"``: the newest due slot runs, the older ones are passed over;
* ``"skip"``: the newest due slot runs only if it came after the pool
  started watching (``since``): a slot missed while no pool ran, or
  before this one started, never runs.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import NamedTuple

from cronsim import CronSim

from config.schedules import Schedule, zone

MAX_CATCH_UP_RUNS = 100
"""The most slots ``catch_up="all"`` runs in one go (the newest ones)."""


class Step(NamedTuple):
    """Take ``slot``; enqueue its run if ``run`` (else the slot passes without one)."""

    slot: float
    run: bool


class Plan(NamedTuple):
    """The steps to take, oldest first, and how many older due slots they pass over."""

    steps: list[Step]
    passed_over: int = 0


class Timetable:
    """The slots of one schedule."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self._zone = zone(schedule.tz)

    def slots(self, after: float, until: float) -> list[float]:
        """Every slot ``s`` with ``after < s <= until``, ascending."""
        every_s = self.schedule.every_s
        if every_s is not None:
            first = math.floor(after / every_s) + 1
            last = math.floor(until / every_s)
            return [k * every_s for k in range(first, last + 1)]
        out: list[float] = []
        cron = CronSim(self._cron, datetime.fromtimestamp(after, self._zone))
        for when in cron:
            t = when.timestamp()
            if t > until:
                break
            if t > after:  # cronsim works in whole seconds: a fraction may come back
                out.append(t)
        return out

    def next_after(self, t: float) -> float:
        """The first slot strictly after ``t``."""
        every_s = self.schedule.every_s
        if every_s is not None:
            return (math.floor(t / every_s) + 1) * every_s
        for when in CronSim(self._cron, datetime.fromtimestamp(t, self._zone)):
            if when.timestamp() > t:
                return when.timestamp()
        raise AssertionError("unreachable: cronsim iterates without end")

    @property
    def _cron(self) -> str:
        assert self.schedule.cron is not None
        return self.schedule.cron


def plan(table: Timetable, last: float | None, since: float, now: float) -> Plan:
    """What to take at ``now``, oldest first (see the module docstring).

    ``last``: the schedule's last slot taken (the store's), ``None`` if
    never; ``since``: when this pool started watching the schedule (its
    start, or the reload that added it). No steps when nothing is due.
    ``passed_over`` counts the due slots before the steps (slots older than
    ``max_delay_s`` are not counted: they were never due here).
    """
    schedule = table.schedule
    after = max(last if last is not None else since, now - schedule.max_delay_s)
    due = table.slots(after, now)
    if not due:
        return Plan([])
    if schedule.catch_up == "all":
        steps = [Step(slot, True) for slot in due[-MAX_CATCH_UP_RUNS:]]
    else:
        newest = due[-1]
        steps = [Step(newest, schedule.catch_up == "latest" or newest >= since)]
    return Plan(steps, len(due) - len(steps))
