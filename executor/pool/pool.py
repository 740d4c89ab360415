"""The pool: one process that owns the store, the executors and the socket.

It runs an asyncio loop (uvloop) and does four things:

* answers requests from the socket (``executor.pool.requests``);
* at the end of each loop turn, commits in one transaction (group commit)
  the submissions and outcomes that arrived and the claims of due tasks for
  the executors (``executor.pool.fleet`` hands them out, keeps a few waiting in
  each executor's pipe, and reports how each one ended); a new task that
  can run at once is stored already claimed;
* applies the retry policy to failed attempts, runs the timers (due tasks,
  purge of expired results) and keeps its tasks' leases (``leases``);
* enqueues the due slots of periodic tasks in the turn's transaction
  (``executor.pool.schedules``), by the clock it was built with.

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
import concurrent.futures
import gc
import logging
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from config import ConfigError, Settings, load_settings, redact_url, socket_path_for
from config.reload import check_reloadable
from executor.pool.fleet import STATUS_WAIT_S, Fleet
from executor.pool.leases import LeaseKeeper
from executor.pool.listener import listen
from executor.pool.requests import Requests, Submission
from executor.pool.retry import RetryPolicy, should_retry
from executor.pool.schedules import Scheduler, prepare
from executor.pool.slots import Inflight, Slot
from executor.pool.wakeup import Wakeup
from executor.store import NewTask, Outcome, Store, StoreError, TaskRecord, open_store
from metrics import PoolMetrics

log = logging.getLogger("offload.pool")

TICK_S = 0.05
# The fsync thread needs the GIL twice per group commit (to start, and to hand
# the result back); with the default 5 ms switch interval it waited behind a
# busy loop for up to that long each time. 0.5 ms: +10 % single POST /tasks
# (2,980/2,993 -> 3,304/3,302 per s, wrk -c64, two runs each).
GIL_SWITCH_S = 0.0005
DUE_TIMER_MAX_S = 3600.0  # a far-off due time re-arms its timer on the way
RETRY_TURN_S = 0.5  # after a turn the store refused (disk full, I/O error)
START_WRITE_S = 0.05  # a start waits at most this long for a turn to write it
REFUSED_LOG_S = 5.0  # refused turns are logged at most this often


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
        self._maybe_due = True
        self._next_due: float | None = None
        self._due_timer: asyncio.TimerHandle | None = None
        self._finishes: list[tuple[Outcome, Inflight]] = []
        # (id, started_at, lease token), oldest first: stored with the next
        # turn that writes, unless the outcome comes first (see started).
        self._starts: list[tuple[str, float, int | None]] = []
        # (task, not_before, error, count_attempt): reschedules the store
        # could not take when they happened, written with the next turn.
        self._reschedules: list[tuple[Inflight, float, dict[str, Any] | None, bool]] = []
        self._starts_timer: asyncio.TimerHandle | None = None
        self._submitted: Counter[str] = Counter()  # tasks stored this turn, by kind
        self._turn_scheduled = False
        self._stopped: asyncio.Event | None = None
        self._reloading = False
        self._last_purge = 0.0
        self._refused_turns = 0
        self._refused_logged = -REFUSED_LOG_S
        # Group commit, pipelined: submissions commit without fsync on the loop;
        # one thread fsyncs, and their replies go out once it has (after_sync).
        self._fsync = concurrent.futures.ThreadPoolExecutor(1, "offload-fsync")
        self._syncing = False
        self._sync_next: list[Callable[[BaseException | None], None]] = []

    # -- lifecycle -------------------------------------------------------------

    @property
    def manifest(self) -> dict[str, dict[str, Any]]:
        """Registered kinds and their options, from the current template."""
        return self.fleet.manifest

    def learn_concurrency(self, kind: str, concurrency: int) -> None:
        """See ``executor.pool.port.SpecSource.learn_concurrency``."""
        self.fleet.concurrency.learn(kind, self.manifest,
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
        self.fleet.use_template(await self.fleet.start_template())
        try:
            self.schedules.use(prepare(self.manifest, self.settings))
        except ConfigError:
            self.fleet.close()
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
        ticker = loop.create_task(self._tick_forever())
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
        if self._reloading or self.stopping:
            return
        self._reloading = True
        try:
            try:
                new = load_settings(self.config_path)
                check_reloadable(self.settings, new)
            except ConfigError as exc:
                log.error("reload refused, keeping the running settings: %s", exc)
                return
            old_settings, self.settings = self.settings, new
            try:
                tpl = await self.fleet.start_template()
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
            self.fleet.use_template(tpl)
            self.schedules.use(schedules)
            log.info("reloaded: %d executor(s), %d kind(s)", new.executors, len(tpl.manifest))
        finally:
            self._reloading = False

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
        self._flush_turn()
        while self._syncing or self._sync_next:
            await asyncio.sleep(0.005)
        self._fsync.shutdown()
        self.fleet.close()
        self.store.close()
        log.info("pool stopped")

    # -- outcomes ----------------------------------------------------------------

    def release(self, inf: Inflight) -> None:
        """A task that never started goes back to pending, its attempt undone."""
        self._reschedule(inf, inf.not_before, None, False)
        self._maybe_due = True
        self.schedule_turn()

    def wake(self) -> None:
        """Tasks may be due (another pool's, on a shared store): claim soon."""
        self._maybe_due = True
        self.schedule_turn()

    def _reschedule(self, inf: Inflight, not_before: float, error: dict[str, Any] | None,
                    count_attempt: bool) -> None:
        """Put a running task back now, or with the next turn if the store
        cannot take it now (its database is away); fenced by the claim's token."""
        try:
            after = self.store.reschedule(inf.id, not_before, error=error,
                                          count_attempt=count_attempt, token=inf.token)
        except StoreError as exc:
            log.warning("task %s: cannot put it back now, trying with the next turn: %s",
                        inf.id, exc)
            self._reschedules.append((inf, not_before, error, count_attempt))
            return
        if after is None:
            self._dropped(inf.id, "its reschedule")

    def policy(self, kind: str) -> RetryPolicy:
        """The retry back-off for ``kind``: its ``@task`` options, else the settings."""
        opts = self.manifest.get(kind, {})
        base = opts.get("retry_backoff_s")
        cap = opts.get("retry_backoff_max_s")
        return RetryPolicy(self.settings.retry_backoff_s if base is None else base,
                           self.settings.retry_backoff_max_s if cap is None else cap)

    def started(self, inf: Inflight) -> None:
        """A handed-out task started: the store learns it with the next turn
        that writes anything (``_take_starts``), or with a turn of its own
        ``START_WRITE_S`` later if none comes sooner, or at once when a reply
        is about to show it (``store_start``). Until then a crash of the pool
        gives the attempt back (``Store.recover``). A task that ends within
        that time has its start written with its outcome; the timer, not a
        turn of its own at once, because that was one more commit per task
        while executors idle."""
        assert inf.started_at is not None
        self._starts.append((inf.id, inf.started_at, inf.token))
        if self.schedules.active:
            self.schedules.started(inf.id)
        self._arm_starts_timer()

    def _arm_starts_timer(self) -> None:
        if self._starts_timer is None and self._starts:
            self._starts_timer = asyncio.get_running_loop().call_later(
                START_WRITE_S, self._write_starts)

    def _write_starts(self) -> None:
        self._starts_timer = None
        if self._starts:
            self.schedule_turn()

    def _starts_due(self) -> bool:
        """Whether starts wait that need a turn of their own: the timer has
        fired (not a clock comparison: the loop may fire a timer a little
        early, and a start found "not old enough" then was never written), or
        the pool is stopping."""
        return bool(self._starts) and (self.stopping or self._starts_timer is None)

    def _take_starts(self, finishes: list[tuple[Outcome, Inflight]]
                     ) -> list[tuple[str, float, int | None]]:
        """The starts this turn writes: every one waiting, except those of
        tasks ending this turn (the outcome carries them). Not only the old
        ones: a start the pool reports (``get``) but the store lacks would be
        given its attempt back by a crash, though the task really ran."""
        ending = {o.id for o, _ in finishes}
        now = [start for start in self._starts if start[0] not in ending]
        self._starts = []
        return now

    def store_start(self, inf: Inflight) -> None:
        """Write the start of ``inf`` now, if no turn has: a reply about to show
        the task running must show what a crash keeps (a start the store lacks
        gets its attempt back). One small commit outside a turn, as
        ``reschedule``; blocks; raises the store's error. Nothing to do if the
        start is stored already or the task has not started."""
        if inf.start_stored or inf.started_at is None:
            return
        # Fenced like every write about a running task: a start stamped on
        # another pool's later claim of it would cost that claim its attempt.
        self.store.started([(inf.id, inf.started_at, inf.token)])
        self._starts = [start for start in self._starts if start[0] != inf.id]
        inf.start_stored = True

    def _starts_stored(self, starts: list[tuple[str, float, int | None]]) -> None:
        """The turn that wrote ``starts`` committed: replies may show them."""
        for task_id, _, _ in starts:
            entry = self.fleet.inflight.get(task_id)
            if entry is not None:
                entry[1].start_stored = True

    def outcome_pending(self, task_id: str) -> str | None:
        """The final status of ``task_id`` if its outcome arrived and waits for
        the turn's write, else ``None``: a cancel must not overwrite it."""
        for outcome, _ in self._finishes:
            if outcome.id == task_id:
                return outcome.status
        return None

    def complete(self, inf: Inflight, ok: bool, result: bytes | None,
                 error: dict[str, Any] | None, retry_delay_s: float | None,
                 retryable: bool) -> None:
        """A started task ended: succeeded, retried with back-off, or failed."""
        now = time.time()
        if inf.started_at is not None:
            self.metrics.observe_run(inf.kind, now - inf.started_at)
        if ok:
            self.fleet.forget(inf.id)
            self._finishes.append((Outcome(inf.id, "succeeded", now, inf.started_at, result,
                                           None, inf.progress, inf.token), inf))
            self.schedule_turn()
            return
        assert error is not None
        self.metrics.task_failed_attempt(inf.kind, error.get("reason", "error"))
        if should_retry(inf.attempts, inf.max_retries, retryable):
            delay = (retry_delay_s if retry_delay_s is not None
                     else self.policy(inf.kind).delay_s(inf.attempts))
            self._reschedule(inf, now + delay, error, True)
            self.metrics.task_retried(inf.kind)
            self.note_due(now + delay)
            return
        self.fleet.forget(inf.id)
        self._finishes.append((Outcome(inf.id, "failed", now, inf.started_at, None, error,
                                       inf.progress, inf.token), inf))
        self.schedule_turn()

    # -- scheduling ----------------------------------------------------------------

    def note_due(self, when: float) -> None:
        """Something becomes due at ``when``: make sure a claim runs then."""
        if when <= time.time():
            self._maybe_due = True
            self.schedule_turn()
        elif self._next_due is None or when < self._next_due:
            self._next_due = when
            self._arm_due_timer()

    def _arm_due_timer(self) -> None:
        """Wake when ``_next_due`` comes, not at the next tick: back-off waits and
        delays would otherwise be up to TICK_S late, by a different amount each
        time (enough to reorder two consecutive back-off waits). A time already
        past is left to the tick (a due task held back by its group would spin)."""
        if self._due_timer is not None:
            self._due_timer.cancel()
            self._due_timer = None
        if self._next_due is None:
            return
        delay = self._next_due - time.time()
        if delay > 0:  # +1 ms: the loop's timers may round down to the millisecond
            self._due_timer = asyncio.get_running_loop().call_later(
                min(delay + 0.001, DUE_TIMER_MAX_S), self._due)

    def _due(self) -> None:
        self._due_timer = None
        if self._next_due is not None and time.time() >= self._next_due:
            self._next_due = None
            self._maybe_due = True
            self.schedule_turn()
        else:
            self._arm_due_timer()

    def schedule_turn(self) -> None:
        """Run the end-of-turn work (commits, hand-out) once, soon."""
        if not self._turn_scheduled:
            self._turn_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_turn)

    def _flush_turn(self) -> None:
        """End of a loop turn: one transaction stores the turn's submissions,
        starts, outcomes and claims. Only once it commits do claimed tasks
        reach the executors and long-polls hear of outcomes; submitters are
        answered once it is on disk. If it is rolled back, nothing of the turn
        happened: submitters get the error, and the starts and outcomes are
        written again in a later turn."""
        self._turn_scheduled = False
        submits = self.requests.take_submits()
        slots_due = not self.stopping and self.schedules.due()
        if not submits and not self._finishes and not self._starts_due() and (
                not self._reschedules) and not slots_due and (
                self.stopping or not self._maybe_due or not self.fleet.room()):
            return  # nothing to write: no transaction at all
        acknowledge = None
        answered = False
        finishes, self._finishes = self._finishes, []
        starts = self._take_starts(finishes) if self._starts else []
        reschedules, self._reschedules = self._reschedules, []
        finished: list[TaskRecord] = []
        dropped: list[tuple[str, str]] = []
        try:
            with self.store.batch():
                if submits:
                    acknowledge = self.requests.store_submits(submits)
                    answered = True
                if starts:
                    done = set(self.store.started(starts))
                    dropped += [(s[0], "its start") for s in starts if s[0] not in done]
                for inf, not_before, error, count in reschedules:
                    if self.store.reschedule(inf.id, not_before, error=error,
                                             count_attempt=count, token=inf.token) is None:
                        dropped.append((inf.id, "its reschedule"))
                    self._maybe_due = True
                if finishes:
                    finished = self.store.finish([o for o, _ in finishes])
                    if any(rec.group_id is not None for rec in finished):
                        self._maybe_due = True  # the next call of a group may run now
                    ended = {rec.id for rec in finished}
                    dropped += [(o.id, "its outcome") for o, _ in finishes if o.id not in ended]
                if slots_due:
                    self.schedules.enqueue_due()
                self._dispatch()
        except Exception as exc:
            self._reschedules[:0] = reschedules
            self._rolled_back(exc, submits if not answered else [], acknowledge,
                              starts, finishes)
            return
        self._starts_stored(starts)
        for task_id, what in dropped:
            self._dropped(task_id, what)
        self.fleet.send_handed_out()
        if slots_due:
            self.schedules.committed()
        for kind, n in self._submitted.items():
            self.metrics.task_submitted(kind, n)
        self._submitted.clear()
        for rec in finished:
            self.metrics.task_finished(rec.kind, rec.status)
            self.requests.task_finished(rec)
        if acknowledge is not None:
            self.after_sync(acknowledge)

    def _rolled_back(self, exc: Exception, unanswered: list[Submission],
                     acknowledge: Callable[[BaseException | None], None] | None,
                     starts: list[tuple[str, float, int | None]],
                     finishes: list[tuple[Outcome, Inflight]]) -> None:
        """The turn's transaction failed: undo what it did in memory, answer
        its submitters, and write its starts and outcomes again later."""
        self._refused_turns += 1
        now = time.monotonic()
        if now - self._refused_logged >= REFUSED_LOG_S:  # a database away refuses every turn
            log.error("the store refused this turn's writes (%d turn(s) refused since the last "
                      "such message), nothing of it is stored; trying again in %.1f s: %s",
                      self._refused_turns, RETRY_TURN_S, exc)
            self._refused_logged, self._refused_turns = now, 0
        self.fleet.undo_handed_out()
        self.schedules.rolled_back()
        self._submitted.clear()
        self._starts[:0] = starts
        self._finishes[:0] = finishes
        for conn, req_id, _, _ in unanswered:
            # The detail (a file path, SQLite's words) is in the log above,
            # not in the answer: it may reach HTTP clients.
            conn.fail(req_id, "store_unavailable", "the store could not write the tasks, "
                      "nothing was stored; retry shortly (the pool's log says why)")
        if acknowledge is not None:
            acknowledge(exc)  # rolled back: nothing of theirs is stored
        self._maybe_due = True
        asyncio.get_running_loop().call_later(RETRY_TURN_S, self.schedule_turn)

    def enqueue(self, tasks: list[NewTask]) -> list[TaskRecord]:
        """Store ``tasks`` (inside the turn's batch) and count them.

        When no stored task is due, those that free places in the executors
        can take are stored already claimed and handed out at once: written
        once instead of inserted and then claimed. The rest are left to the
        claim at the end of the turn.
        """
        now = time.time()
        room = [] if (self.stopping or self._maybe_due or (
            self._next_due is not None and self._next_due <= now)) else self.fleet.places(
                concurrency=self.fleet.concurrency_of(tasks[0].kind, "") if tasks else None)
        capacity = sum(n for _, n in room if n > 0)
        if capacity:
            records, started = self.store.enqueue_and_claim(tasks, now, capacity, self.owner,
                                                            self.settings.lease_s)
            self._hand_out(room, started)
        else:
            records, started = self.store.enqueue(tasks, now, sync=False), []
        if len(started) < len(records):
            self._maybe_due = True
        self._submitted.update(rec.kind for rec in records)  # counted once committed
        return records

    def _dispatch(self) -> None:
        if self.stopping or not self._maybe_due:
            return
        room = self.fleet.room()
        capacity = sum(n for _, n in room if n > 0)
        if capacity <= 0:
            return
        now = time.time()
        claimed = self.store.claim(capacity, now, self.owner, self.settings.lease_s)
        if len(claimed) < capacity:
            self._maybe_due = False
            next_due = self.store.next_due()
            if next_due != self._next_due:
                self._next_due = next_due
                self._arm_due_timer()
        self._hand_out(room, claimed)

    def _hand_out(self, room: list[tuple[Slot, int]], claimed: list[TaskRecord]) -> None:
        """Give claimed tasks to the executors in ``room`` (no more than fit); they
        reach the pipes once the turn commits (``Fleet.send_handed_out``)."""
        if self.schedules.active:
            self.schedules.handed_out(claimed)
        left = self.fleet.hand_out(room, claimed)
        for rec in left:  # no executor can take it beside what it holds: pending again
            self.store.reschedule(rec.id, rec.not_before, error=None, count_attempt=False,
                                  token=rec.lease_token)
        if left:
            # Due still, and claimed again once an executor empties (``Fleet.starved``
            # keeps the claims to empty executors until then: no spinning).
            self._maybe_due = True

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self._tick()
            except Exception:
                log.exception("pool tick failed")

    def _tick(self) -> None:
        now = time.time()
        self.fleet.watch(now)
        # First after the executors: a pool that cannot renew must kill its
        # running tasks in time, whatever else in this tick fails.
        self.leases.tick(time.monotonic())
        if not self._reloading:  # the settings are new, the template not yet
            self.fleet.autoscale(self._due_waiting)
        if not self.stopping and self.schedules.due():
            self.schedule_turn()
        if self._next_due is not None and now >= self._next_due:
            self._next_due = None
            self._maybe_due = True
            self.schedule_turn()
        ttl = self.settings.result_ttl_s
        if now - self._last_purge > min(60.0, max(0.5, ttl / 4)):
            self._last_purge = now
            try:
                purged = self.store.purge(now - ttl)
            except StoreError as exc:
                log.error("cannot purge finished tasks (trying again later): %s", exc)
                return
            if purged:
                log.info("purged %d finished task(s) older than %g s", purged, ttl)

    def _dropped(self, task_id: str, what: str) -> None:
        """A late write the store refused: the task's lease is another claim's."""
        log.warning("task %s: %s was not stored: the task is no longer this pool's (its "
                    "lease expired or it was cancelled; another pool may run it again), "
                    "so the run that replaced this one decides", task_id, what)

    def _due_waiting(self) -> bool:
        """Whether a task in the store is due now (it may still wait behind its
        group): asked by the autoscaler when every executor is busy, each
        tick. False when the store cannot say (its database is away): growth
        waits for it; the lease keeper and the turns report the error."""
        try:
            due = self.store.next_due()
        except StoreError:
            return False
        return due is not None and due <= time.time()

    # -- used by requests --------------------------------------------------------

    def schedule_rows(self) -> list[dict[str, Any]]:
        """Each schedule and its slots (``Scheduler.rows``)."""
        return self.schedules.rows()

    def after_sync(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call ``callback(None)`` once everything committed so far is on disk
        (``callback(error)`` if the fsync failed). At most one fsync runs at a
        time; callbacks that arrive meanwhile share the next one."""
        self._sync_next.append(callback)
        if not self._syncing:
            self._start_sync()

    def _start_sync(self) -> None:
        batch, self._sync_next = self._sync_next, []
        self._syncing = True
        fut = asyncio.get_running_loop().run_in_executor(self._fsync, self.store.sync)
        fut.add_done_callback(lambda f: self._synced(f, batch))

    def _synced(self, fut: asyncio.Future[None],
                batch: list[Callable[[BaseException | None], None]]) -> None:
        self._syncing = False
        error = fut.exception()
        if error is not None:
            log.error("fsync of the store failed: %s", error)
        for callback in batch:
            callback(error)
        if self._sync_next:
            self._start_sync()

