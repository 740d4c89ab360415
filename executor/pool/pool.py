"""The pool: one process that owns the store, the executors and the socket.

It runs an asyncio loop (uvloop) and does four things:

* answers requests from the socket (``executor.pool.requests``);
* at the end of each loop turn, commits in one transaction (group commit,
  ``executor.pool.turn``) the submissions, starts and outcomes that arrived
  and the claims of due tasks for the executors (``executor.pool.fleet``
  hands them out, keeps a few waiting in each executor's pipe, and reports
  how each one ended); a new task that can run at once is stored already
  claimed (``enqueue``); starts are written behind the run
  (``executor.pool.starts``);
* applies the retry policy to failed attempts, claims when tasks come due
  (``executor.pool.due``), runs its periodic checks (``executor.pool.tick``:
  stalled executors, the purge of expired results) and keeps its tasks'
  leases (``leases``);
* enqueues the due slots of periodic tasks in the turn's transaction
  (``executor.pool.schedules``), by the clock it was built with.

``Pool`` itself holds the process's lifecycle (start, reload, stop), how a
task's end is recorded (``complete``, ``release``) and the claims; each part
above knows the pool only through a narrow protocol of its own.

On a shared store (PostgreSQL, one pool per host) every claim carries a
fencing token, and the pool writes each task's start, outcome and
reschedule with it: a write the store drops (the lease went to another
pool while this one was paused) is logged and changes nothing. Other
pools' new work wakes it through the store's listener (``wakeup``).

Signal handlers only set flags or schedule work on the loop (gunicorn's
habit): SIGTERM (and SIGINT when run on its own) -> graceful stop, SIGHUP ->
reload settings and task code, EOF on the lifeline fd -> graceful stop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from config import ConfigError, Settings, load_settings, redact_url, socket_path_for
from config.reload import check_reloadable
from executor.pool.claims import Claims
from executor.pool.due import Due
from executor.pool.fleet import STATUS_WAIT_S, Fleet
from executor.pool.leases import LeaseKeeper
from executor.pool.listener import listen
from executor.pool.outcomes import Outcomes
from executor.pool.requests import Requests
from executor.pool.schedules import Scheduler, prepare
from executor.pool.slots import Inflight
from executor.pool.starts import StartWrites
from executor.pool.tick import TICK_S, Ticker
from executor.pool.turn import Turn
from executor.pool.wakeup import Wakeup
from executor.store import NewTask, Store, TaskRecord, open_store
from metrics import PoolMetrics

log = logging.getLogger("offload.pool")

# The fsync thread needs the GIL twice per group commit (to start, and to hand
# the result back); with the default 5 ms switch interval it waited behind a
# busy loop for up to that long each time. 0.5 ms: +10 % single POST /tasks
# (2,980/2,993 -> 3,304/3,302 per s, wrk -c64, two runs each).
GIL_SWITCH_S = 0.0005


class Pool:
    """The dispatcher. Build it in the pool process's ``main``; ``run`` until stopped."""

    def __init__(self, settings: Settings, config_path: str | None = None,
                 lifeline_fd: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """``clock``: the time schedules go by (``executor.pool.schedules``);
        tests pass a faster or offset one. Everything else reads ``time.time``."""
        self.settings = settings
        self.config_path = config_path
        self.lifeline_fd = lifeline_fd
        self.store: Store = open_store(settings.store_url, writer=True)
        self.metrics = PoolMetrics()
        self.owner = uuid.uuid4().hex
        self.requests = Requests(self)
        self.fleet = Fleet(self)
        self.leases = LeaseKeeper(self)
        self.wakeup = Wakeup(self.store, self.wake)
        self.schedules = Scheduler(self, clock)
        self.stopping = False
        self.reloading = False
        self.due = Due(self.schedule_turn)
        self.starts = StartWrites(self)
        self.turn = Turn(self)
        self.claims = Claims(self)
        self.outcomes = Outcomes(self)
        self.ticker = Ticker(self)
        self._stopped: asyncio.Event | None = None

    # -- lifecycle -------------------------------------------------------------

    @property
    def manifest(self) -> dict[str, dict[str, Any]]:
        """Registered kinds and their options, from the current template."""
        return self.fleet.manifest

    def learn_concurrency(self, kind: str, concurrency: int) -> None:
        """See ``executor.pool.port.SpecSource.learn_concurrency``."""
        self.fleet.handout.concurrency.learn(kind, self.manifest,
                                             concurrency or self.settings.async_concurrency)

    async def run(self) -> None:
        """Serve until a stop is requested, then stop gracefully."""
        loop = asyncio.get_running_loop()
        sys.setswitchinterval(GIL_SWITCH_S)
        self._stopped = asyncio.Event()
        # Only a single writer's pool may take back every running task at its
        # start: on a shared store other pools hold leases, and a previous
        # life of this one is swept once its leases expire.
        recovered = [] if self.store.shared else self.store.recover(time.time(),
                                                                     everything=True)
        if recovered:
            log.warning("recovered %d task(s) left running by a previous pool", len(recovered))
            for rec in recovered:
                if rec.status == "failed":
                    self.metrics.task_failed_attempt(rec.kind, "lost")
                    self.metrics.task_finished(rec.kind, "failed")
        self.fleet.templates.use(await self.fleet.templates.start())
        try:
            self.schedules.use(prepare(self.manifest, self.settings))
        except ConfigError:
            self.fleet.templates.close()
            raise
        server = await listen(socket_path_for(self.settings), self.requests.handle,
                              self.settings.max_frame_bytes)
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        if self.lifeline_fd is None:  # on its own: Ctrl-C stops it
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
        else:
            # Supervised: a terminal's Ctrl-C reaches every process, and the HTTP
            # workers may still need this pool to store background calls while
            # they stop; the supervisor stops it (SIGTERM, or the lifeline) after.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        if self.lifeline_fd is not None:
            loop.add_reader(self.lifeline_fd, self._lifeline_readable)
        ticker = loop.create_task(self.ticker.run())
        self.wakeup.start()
        # Start-up objects leave the collector's reach: a full collection then
        # scans only what serving made (one paused the loop, and so every
        # reply, for ~30 ms under load before).
        gc.freeze()
        log.info("pool ready: %d executor(s) (up to %d), socket %s, store %s",
                 self.settings.executors, max(self.settings.executors,
                                              self.settings.executors_max),
                 socket_path_for(self.settings), redact_url(self.settings.store_url))
        await self._stopped.wait()
        ticker.cancel()
        self.wakeup.close()
        server.close()
        await self._shutdown()

    def request_stop(self) -> None:
        """Begin a graceful stop (safe to call more than once)."""
        if self._stopped is not None:
            self._stopped.set()

    def _lifeline_readable(self) -> None:
        assert self.lifeline_fd is not None
        try:
            data = os.read(self.lifeline_fd, 64)
        except OSError:
            data = b""
        if not data:
            log.warning("the supervisor is gone: stopping")
            asyncio.get_running_loop().remove_reader(self.lifeline_fd)
            self.request_stop()

    async def reload(self) -> None:
        """Re-read settings and task code; resize and replace executors.

        A bad configuration or task code that fails to import is refused with
        a logged error and the pool keeps running as it was.
        """
        if self.reloading or self.stopping:
            return
        self.reloading = True
        try:
            try:
                new = load_settings(self.config_path)
                check_reloadable(self.settings, new)
            except ConfigError as exc:
                log.error("reload refused, keeping the running settings: %s", exc)
                return
            old_settings, self.settings = self.settings, new
            try:
                tpl = await self.fleet.templates.start()
            except RuntimeError as exc:
                self.settings = old_settings
                log.error("reload refused, keeping the running task code: %s", exc)
                return
            try:
                schedules = prepare(tpl.manifest, new)
            except ConfigError as exc:
                tpl.close()
                self.settings = old_settings
                log.error("reload refused, keeping the running settings, task code and "
                          "schedules: %s", exc)
                return
            self.fleet.templates.use(tpl)
            self.schedules.use(schedules)
            log.info("reloaded: %d executor(s), %d kind(s)", new.executors, len(tpl.manifest))
        finally:
            self.reloading = False

    async def _shutdown(self) -> None:
        self.stopping = True
        self.fleet.stop_all("shutdown")
        deadline = time.monotonic() + self.settings.graceful_timeout_s
        while self.fleet.slots and time.monotonic() < deadline:
            await asyncio.sleep(TICK_S)
        for slot in list(self.fleet.slots.values()):
            self.fleet.kill(slot, "shutdown")
        deadline = time.monotonic() + STATUS_WAIT_S + 1
        while self.fleet.slots and time.monotonic() < deadline:
            await asyncio.sleep(TICK_S)
        await self.turn.close()
        self.fleet.templates.close()
        self.store.close()
        log.info("pool stopped")

    # -- what the parts call ------------------------------------------------------

    def started(self, inf: Inflight) -> None:
        """A handed-out task started: its start is written behind it
        (``StartWrites.add``)."""
        self.starts.add(inf)
        if self.schedules.active:
            self.schedules.started(inf.id)

    def complete(self, inf: Inflight, ok: bool, result: bytes | None,
                 error: dict[str, Any] | None, retry_delay_s: float | None,
                 retryable: bool) -> None:
        """A started task ended: succeeded, retried with back-off, or failed
        (``Outcomes.complete``)."""
        self.outcomes.complete(inf, ok, result, error, retry_delay_s, retryable)

    def release(self, inf: Inflight) -> None:
        """A task that never started goes back to pending, its attempt undone."""
        self.outcomes.release(inf)

    def wake(self) -> None:
        """Tasks may be due (another pool's, on a shared store): claim soon."""
        self.due.now()

    def schedule_turn(self) -> None:
        """Run the end-of-turn work (commits, hand-out) once, soon (``Turn``)."""
        self.turn.schedule()

    def dispatch(self) -> None:
        """Claim due tasks in the turn's transaction (``Claims.dispatch``)."""
        self.claims.dispatch()

    # -- used by requests (``executor.pool.port.PoolPort``) ----------------------

    def enqueue(self, tasks: list[NewTask]) -> list[TaskRecord]:
        """Store ``tasks`` in the turn's transaction, claimed at once where the
        executors have room (``Claims.enqueue``)."""
        return self.claims.enqueue(tasks)

    def store_start(self, inf: Inflight) -> None:
        """Write the start of ``inf`` now, if no turn has, before a reply shows
        it running (``StartWrites.write_now``); blocks; raises the store's error."""
        self.starts.write_now(inf)

    def outcome_pending(self, task_id: str) -> str | None:
        """The final status of ``task_id`` if its outcome waits for the turn's
        write, else ``None`` (``Turn.outcome_pending``)."""
        return self.turn.outcome_pending(task_id)

    def note_due(self, when: float) -> None:
        """Something becomes due at ``when``: make sure a claim runs then (``Due.note``)."""
        self.due.note(when)

    def schedule_rows(self) -> list[dict[str, Any]]:
        """Each schedule and its slots (``Scheduler.rows``)."""
        return self.schedules.rows()
