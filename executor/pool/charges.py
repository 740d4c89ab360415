"""Who is charged when an executor dies with tasks running.

What kills an executor ends every task running in it; ``decide`` says, for
each, what the pool records (pure: no process, store or clock is touched).

A ``shutdown`` kill (the pool is stopping) charges nobody: every task goes
back to pending, its attempt not counted. Otherwise:

* the hard time limit: the task(s) that passed it are charged ``timeout``;
  the others go back to pending, their attempt not counted;
* a forced cancel (a ``def`` task, or an ``async def`` one that ignored
  ``CANCEL`` for ``kill_grace_s``): the cancelled task is already recorded;
  the others go back to pending, attempt not counted;
* a crash (segfault, ``os._exit``, the OOM killer) with one task running:
  that task is charged ``crash``; with several, the culprit is unknown, so
  none is charged: each goes back to pending, attempt not counted, in
  *quarantine*: from then on it runs alone (one at a time), so a task that
  crashes again is known to be the culprit and charged, and a well-behaved
  one is never failed by a neighbour. Each task is released this way at
  most once (afterwards it runs alone), so a poison task still ends
  ``failed`` after ``max_retries + 1`` charged attempts. Quarantine is kept
  in the pool's memory until the task ends.
"""

from __future__ import annotations

import enum
from collections.abc import Set
from typing import Any

from executor.pool.slots import Inflight


class Charge(enum.Enum):
    """What becomes of one task that was running in a dead executor."""

    RECORDED = "recorded"  # cancelled with force: the cancel request recorded it
    RELEASE = "release"  # back to pending, attempt not counted
    QUARANTINE = "quarantine"  # RELEASE, and from now on it runs alone
    TIMEOUT = "timeout"  # charged: failed attempt, reason timeout
    CRASH = "crash"  # charged: failed attempt, reason crash


def decide(running: list[Inflight], kill_reason: str | None, quarantine: Set[str]
           ) -> list[tuple[Inflight, Charge]]:
    """The charge of each task in ``running`` (the tasks a dead executor was
    running), given why the pool killed it (``kill_reason``: ``None`` when it
    died on its own) and which tasks already run alone (``quarantine``)."""
    shared = len(running) > 1
    verdicts = []
    for inf in running:
        if inf.cancelled_by:
            charge = Charge.RECORDED
        elif kill_reason in ("shutdown", "cancelled"):
            charge = Charge.RELEASE  # killed for the pool's stop, or a cancelled neighbour
        elif kill_reason == "timeout":
            charge = Charge.TIMEOUT if inf.late else Charge.RELEASE  # a late neighbour's
        elif shared and inf.id not in quarantine:
            charge = Charge.QUARANTINE  # the culprit is unknown
        else:
            charge = Charge.CRASH
        verdicts.append((inf, charge))
    return verdicts


def error(charge: Charge, inf: Inflight, status: str, pid: int | None,
          kill_grace_s: float) -> dict[str, Any]:
    """The error record of a charged task (``TIMEOUT`` or ``CRASH``)."""
    if charge is Charge.TIMEOUT:
        limit = inf.timeout_s + kill_grace_s
        return {"reason": "timeout", "traceback": "",
                "message": f"timeout: hard time limit of {limit:g} s passed; executor "
                           f"{pid} and its process group were killed"}
    return {"reason": "crash", "traceback": "",
            "message": f"crash: {status} (executor pid {pid} died while running the task)"}
