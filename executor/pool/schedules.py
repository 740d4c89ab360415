"""The pool's periodic tasks: each due slot enqueued once, with no leader.

Every pool (one per host) runs a ``Scheduler``. When a schedule's next slot
comes by the pool's clock, the pool's next turn calls ``enqueue_due``
inside its transaction: for each slot ``timetable.plan`` says to take, it
takes the slot in the store (``Store.take_slot``, a compare-and-set on the
schedule's last slot), and only if that call won it enqueues the run
through the pool's ordinary ``enqueue``, with the idempotency key
``schedule:<name>@<slot>``, and records the run's task (``slot_task``).
All of it commits with the turn or not at all, so a slot runs once however
many pools (or restarts) try, and purging old tasks never reopens one: the
slot row outlives them.

``overlap="skip"`` takes a slot without a run while the last run is pending,
running or retrying; ``"queue"`` puts the runs in one group
(``schedule:<name>``, ``seq`` = the slot in ms), so each waits for the one
before (the store's group order). A task with a ``scheduled_for`` parameter
receives its slot (seconds since the epoch).

The clock is the one the ``Pool`` was built with (``time.time`` in
production); every time here is read from it, so tests run whole days of
slots in seconds.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from config import ConfigError, Settings
from config.schedules import Schedule, ScheduleError, code_schedule
from executor.pool.port import PoolPort
from executor.pool.timetable import Timetable, plan
from executor.store import NewTask, ScheduleSlot, TaskRecord
from executor.wire.callcheck import CallChecks
from executor.wire.codec import encode_call
from executor.wire.registry import unknown_kind_message

log = logging.getLogger("offload.pool")

KEY_PREFIX = "schedule:"
UNFINISHED = frozenset({"pending", "running", "retrying"})
_LAG_WATCH_MAX = 10_000  # handed-out runs remembered for the lag metric


@dataclass(frozen=True)
class Prepared:
    """A checked schedule, ready to run."""

    schedule: Schedule
    table: Timetable
    scheduled_for: bool  # the task takes a ``scheduled_for`` parameter
    max_retries: int
    timeout_s: float


def slot_key(name: str, slot: float) -> str:
    """The idempotency key of ``name``'s run for ``slot``."""
    return f"{KEY_PREFIX}{name}@{slot:.3f}"


def parse_key(key: str | None) -> tuple[str, float] | None:
    """``(name, slot)`` of a key made by ``slot_key``, else ``None``."""
    if key is None or not key.startswith(KEY_PREFIX):
        return None
    name, _, slot = key[len(KEY_PREFIX):].rpartition("@")
    try:
        return name, float(slot)
    except ValueError:
        return None


def prepare(manifest: dict[str, dict[str, Any]], settings: Settings) -> dict[str, Prepared]:
    """Every schedule of the task code (``@task(cron=...)``) and of the settings,
    checked against the registered kinds. Raises ``ConfigError`` naming the
    schedule and what is accepted: a bad timing, an unknown kind, a name
    used twice, arguments that do not fit the task."""
    schedules: list[Schedule] = []
    try:
        for kind, opts in manifest.items():
            if opts.get("schedule") is not None:
                schedules.append(code_schedule(kind, opts["schedule"]))
    except ScheduleError as exc:
        raise ConfigError(str(exc)) from None
    schedules.extend(settings.schedules)
    out: dict[str, Prepared] = {}
    checks = CallChecks()
    for s in schedules:
        where = f"{s.source}: schedule {s.name!r}"
        if s.name in out:
            raise ConfigError(f"{where}: the name is also used by the schedule from "
                              f"{out[s.name].schedule.source}; accepted: a name of its own")
        entry = manifest.get(s.kind)
        if entry is None:
            raise ConfigError(f"{where}: {unknown_kind_message(s.kind, manifest)}")
        params = entry.get("params") or []
        takes = any(p[0] == "scheduled_for" and p[1] in (1, 3) for p in params)
        if "scheduled_for" in s.kwargs:
            raise ConfigError(f"{where}: 'kwargs' sets scheduled_for, which the schedule "
                              "gives (its slot); remove it")
        try:
            payload = _payload(s, takes, 0.0)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        problem = checks.problem(s.kind, entry, payload, manifest)
        if problem is not None:
            raise ConfigError(f"{where}: '{problem[0]}' do not fit the task: {problem[1]}")
        max_retries = entry.get("max_retries")
        timeout_s = entry.get("timeout_s")
        out[s.name] = Prepared(
            s, Timetable(s), takes,
            settings.default_max_retries if max_retries is None else max_retries,
            settings.default_timeout_s if timeout_s is None else timeout_s)
    return out


def _payload(s: Schedule, scheduled_for: bool, slot: float) -> bytes:
    kwargs = {**s.kwargs, "scheduled_for": slot} if scheduled_for else s.kwargs
    return encode_call(list(s.args), kwargs)


class Scheduler:
    """The schedules one pool runs. Used from the pool's loop only."""

    def __init__(self, pool: PoolPort, clock: Callable[[], float]) -> None:
        self.pool = pool
        self.clock = clock
        self.active: dict[str, Prepared] = {}
        self._since: dict[str, float] = {}  # when this pool started watching each
        self._next: dict[str, float] = {}  # each schedule's next check, by ``clock``
        self._wake: float | None = None  # the earliest of ``_next`` (read every turn)
        self._next_before: dict[str, float] | None = None  # restored if the turn rolls back
        self._runs: Counter[str] = Counter()  # runs enqueued this turn
        self._skipped: Counter[tuple[str, str]] = Counter()  # (name, reason) this turn
        self._handed_out: dict[str, tuple[str, float]] = {}  # task id -> (name, slot)

    def use(self, prepared: dict[str, Prepared]) -> None:
        """Run ``prepared`` (from ``prepare``) from now on, in place of the
        schedules before; each is checked at the next turn."""
        now = self.clock()
        self._since = {name: self._since.get(name, now) for name in prepared}
        self._next = dict.fromkeys(prepared, now)
        self._woken()
        self.active = prepared
        self.pool.metrics.schedules_known(prepared)
        if prepared:
            log.info("schedules: %s", ", ".join(
                f"{n} ({p.schedule.spec})" for n, p in sorted(prepared.items())))

    def due(self) -> bool:
        """Whether a schedule has a slot to look at now (cheap: every turn asks)."""
        return self._wake is not None and self.clock() >= self._wake

    def _woken(self) -> None:
        self._wake = min(self._next.values()) if self._next else None

    def enqueue_due(self) -> None:
        """Take and enqueue every due slot (see the module docstring). Inside
        the turn's batch; the caller then calls ``committed`` or ``rolled_back``."""
        now = self.clock()
        due = [name for name, at in self._next.items() if at <= now]
        if not due:
            return
        self._next_before = dict(self._next)
        store = self.pool.store
        rows = store.schedule_slots()
        for name in due:
            p = self.active[name]
            row = rows.get(name)
            steps, passed_over = plan(p.table, None if row is None else row.slot,
                                      self._since[name], now)
            for i, step in enumerate(steps):
                if not store.take_slot(name, step.slot, now):
                    continue  # another pool (or an earlier life of this one) took it
                if i == 0 and passed_over:  # counted by whoever takes the first step
                    self._skipped[name, "missed"] += passed_over
                if not step.run:
                    self._skipped[name, "missed"] += 1
                    continue
                if p.schedule.overlap == "skip" and self._running(row):
                    self._skipped[name, "overlap"] += 1
                    continue
                (rec,) = self.pool.enqueue([self._task(p, step.slot)])
                store.slot_task(name, step.slot, rec.id)
                row = ScheduleSlot(name, step.slot, now, rec.id, step.slot)
                self._runs[name] += 1
            last = store.schedule_slots().get(name)
            self._next[name] = p.table.next_after(max(now, last.slot if last else now))
        self._woken()

    def _running(self, row: ScheduleSlot | None) -> bool:
        if row is None or row.task_id is None:
            return False
        rec = self.pool.store.get(row.task_id)
        return rec is not None and rec.status in UNFINISHED

    def _task(self, p: Prepared, slot: float) -> NewTask:
        s = p.schedule
        queue = s.overlap == "queue"
        return NewTask(s.kind, _payload(s, p.scheduled_for, slot), p.max_retries, p.timeout_s,
                       group_id=KEY_PREFIX + s.name if queue else None,
                       seq=round(slot * 1000) if queue else 0,
                       idempotency_key=slot_key(s.name, slot))

    def committed(self) -> None:
        """The turn committed: count its runs and passed-over slots."""
        self._next_before = None
        metrics = self.pool.metrics
        for name, n in self._runs.items():
            metrics.schedule_runs(name, n)
        for (name, reason), n in self._skipped.items():
            metrics.schedule_skipped(name, reason, n)
        self._runs.clear()
        self._skipped.clear()

    def rolled_back(self) -> None:
        """The turn rolled back: nothing of it is stored; look at the same slots again."""
        if self._next_before is not None:
            self._next = self._next_before
            self._next_before = None
            self._woken()
        self._runs.clear()
        self._skipped.clear()

    def handed_out(self, records: Iterable[TaskRecord]) -> None:
        """Claimed tasks go to executors: remember which are runs of a slot."""
        for rec in records:
            parsed = parse_key(rec.idempotency_key)
            if parsed is not None and parsed[0] in self.active:
                if len(self._handed_out) >= _LAG_WATCH_MAX:
                    del self._handed_out[next(iter(self._handed_out))]
                self._handed_out[rec.id] = parsed

    def started(self, task_id: str) -> None:
        """A task started: if it runs a slot, observe the slot-to-start lag."""
        parsed = self._handed_out.pop(task_id, None)
        if parsed is not None:
            self.pool.metrics.observe_schedule_lag(parsed[0], max(0.0, self.clock() - parsed[1]))

    def rows(self) -> list[dict[str, Any]]:
        """``GET /schedules``: each schedule, its next slot and its last slot and run."""
        now = self.clock()
        stored = self.pool.store.schedule_slots()
        out = []
        for name, p in sorted(self.active.items()):
            s, row = p.schedule, stored.get(name)
            task = None if row is None or row.task_id is None else self.pool.store.get(row.task_id)
            out.append({
                "name": name, "kind": s.kind, "spec": s.spec, "source": s.source,
                "cron": s.cron, "every_s": s.every_s, "tz": s.tz, "catch_up": s.catch_up,
                "max_delay_s": s.max_delay_s, "overlap": s.overlap,
                "next_slot": p.table.next_after(max(now, row.slot if row else now)),
                "last_slot": None if row is None else row.slot,
                "last_run": None if row is None or row.task_id is None else {
                    "slot": row.task_slot, "task_id": row.task_id,
                    # None once the task was purged (result_ttl_s)
                    "status": None if task is None else task.status},
            })
        return out
