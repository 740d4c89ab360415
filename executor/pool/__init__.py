"""The pool process: the one writer to the store, the executors' dispatcher.

Runs in the pool process (spawned by the gunicorn master's keeper, or on its
own with ``python -m executor``), and ``keeper`` in the keeper process that
respawns it. Imports ``config``, ``metrics``, ``executor.wire`` and
``executor.store``; never ``executor.worker`` (executors are separate
processes, reached through ``templates`` and pipes) nor ``executor.client``.

- ``pool``: ``Pool``: the process's loop and lifecycle (start, reload, stop), its parts' wiring.
- ``turn``: the group commit: one transaction at the end of each loop turn (``Turn``);
  ``fsync``: the thread whose fsync the turn's replies wait for.
- ``starts``: tasks' starts written behind their run, with the turns (``StartWrites``).
- ``claims``: claiming due tasks (on insert, and at the end of a turn) and handing them out.
- ``due``: when the next claim runs: now, or when a task comes due (``Due``, its timer).
- ``outcomes``: how a task's end is recorded: success, retry with back-off, failure, release.
- ``tick``: the periodic checks (executors, leases, autoscaling, purge; ``Ticker``).
- ``leases``: renewing this pool's leases, sweeping expired ones, giving up what it
  cannot renew (``LeaseKeeper``).
- ``wakeup``: hearing that other pools made work due, on a shared store (``Wakeup``).
- ``requests``: answers to socket requests; ``ops``: the requests and their replies (the spec).
- ``reruns``: running failed or cancelled tasks again (ops ``retry``, ``retry_failed``).
- ``observe``: what the pool says about itself (ops ``stats``, ``health``, ``metrics``).
- ``port``: the narrow view of the pool that ``requests`` and ``specs`` get.
- ``specs``: checking submitted task specs against the registered kinds.
- ``fleet``: the executors: spawn, stop, kill, top up, watch (the pool's one handle on
  them; its parts ``templates``, ``handout`` and ``results`` are called directly);
  ``slots``: one executor's state.
- ``autoscale``: how many executors, between ``executors`` and ``executors_max`` (pure).
- ``capacity``: how many tasks an executor may take, and which executor takes which (pure).
- ``handout``: which executor holds which task: hand out, take back (steal), cancel.
- ``results``: what executors say (``STARTED``, ``PROGRESS``, ``DONE``) and how each
  ends (EOF, then burial); ``charges``: who is charged when an executor dies (pure).
- ``census``: what ``/queue/stats`` and the metrics show of the executors (pure).
- ``pipes``: non-blocking writes to the task pipes, and reading waiting tasks back.
- ``generations``: the template processes over reloads and deaths (``TemplateGenerations``);
  ``templates``: the pool's handle on one template process.
- ``listener``: the private Unix socket the HTTP workers connect to.
- ``retry``: the retry policy and respawn back-off.
- ``schedules``: periodic tasks, each slot taken and enqueued once (``Scheduler``);
  ``timetable``: their slot arithmetic (pure).
- ``keeper``: the keeper process (``python -m executor.pool.keeper``; not re-exported).
"""

from executor.pool.pool import Pool
from executor.pool.retry import RetryPolicy

__all__ = ["Pool", "RetryPolicy"]
