"""Every offload metric, declared once, owned by the pool process.

The pool builds one ``PoolMetrics`` in its ``main`` and records task events
on it as its dispatcher sees them (it times tasks from outside, so a crashed
executor's task still counts). HTTP workers keep no Prometheus metrics: they
ship request samples to the pool (``observe_http``) and ask it for the
exposition text (``render``). Nothing here touches prometheus_client's global
``REGISTRY`` or its multiprocess mode.
"""

from __future__ import annotations

import math
from collections import Counter as Tally
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as _values

OUTCOMES = ("succeeded", "failed", "cancelled")
FAILURE_REASONS = ("error", "crash", "timeout", "memory", "lost")
EXECUTOR_STATES = ("starting", "idle", "busy", "stopping")
SKIP_REASONS = ("missed", "overlap")
RESTART_REASONS = ("crash", "timeout", "memory", "recycled", "reload", "killed")
SLOT_STATES = ("busy", "free")

# 1 ms to 10 min: tasks range from cache pokes to report builds.
TASK_BUCKETS_S = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0,
                  30.0, 60.0, 120.0, 300.0, 600.0)
# 0.5 ms to 10 s: a submit is a socket round trip plus a durable write.
HTTP_BUCKETS_S = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0)

# Shared with metrics.http, which serves this gauge at 0 when the pool is down.
POOL_UP_NAME = "offload_pool_up"
POOL_UP_HELP = "1 when the metrics were served by the pool process, 0 when it was unreachable."


def _check(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of: {', '.join(allowed)}")
    return value


def _sample(i: int, sample: Sequence[object]) -> tuple[str, str, str, float]:
    """One wire sample ``[method, route, status, seconds]`` as label values and a duration."""
    if len(sample) != 4:
        raise ValueError(f"samples[{i}]: expected [method, route, status, seconds], got {sample!r}")
    method, route, status, seconds = sample
    if not isinstance(method, str) or not isinstance(route, str):
        raise ValueError(f"samples[{i}]: method and route must be strings, got {sample!r}")
    if not isinstance(status, int) or isinstance(status, bool):
        raise ValueError(f"samples[{i}]: status must be an int, got {status!r}")
    if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"samples[{i}]: seconds must be a finite number >= 0, got {seconds!r}")
    return method.upper(), route, str(status), float(seconds)


class PoolMetrics:
    """The pool's metrics, in a private ``CollectorRegistry``.

    Not thread-safe beyond what prometheus_client guarantees per metric; the
    pool calls it from its event loop only. Label values that come from a
    fixed vocabulary are checked (``ValueError``); ``kind``, ``status``,
    ``method`` and ``route`` are bounded by the caller (registered kinds,
    store statuses, route templates).
    """

    def __init__(self) -> None:
        if _values.ValueClass is not _values.MutexValue:
            # prometheus_client picks its value storage once, at import, from the
            # environment; in multiprocess mode every metric would write per-pid files.
            raise RuntimeError(
                "prometheus_client is in multiprocess mode (PROMETHEUS_MULTIPROC_DIR was set "
                "when it was imported); offload keeps every metric in the pool process: "
                "unset PROMETHEUS_MULTIPROC_DIR for offload's processes"
            )
        self.registry = CollectorRegistry()
        r = self.registry
        self._submitted = Counter("offload_tasks_submitted", "Tasks accepted by the pool.",
                                  ["kind"], registry=r)
        self._finished = Counter("offload_tasks_finished",
                                 "Tasks that reached a final status, by outcome.",
                                 ["kind", "outcome"], registry=r)
        self._failures = Counter("offload_task_failures",
                                 "Failed attempts, including ones retried afterwards.",
                                 ["kind", "reason"], registry=r)
        self._retries = Counter("offload_task_retries", "Attempts scheduled again after a failure.",
                                ["kind"], registry=r)
        self._run_s = Histogram("offload_task_duration_seconds",
                                "Run time of an attempt, timed by the pool.",
                                ["kind"], buckets=TASK_BUCKETS_S, registry=r)
        self._queue_s = Histogram("offload_task_queue_seconds",
                                  "Wait before an attempt started (accepted, or due if delayed).",
                                  ["kind"], buckets=TASK_BUCKETS_S, registry=r)
        self._depth = Gauge("offload_queue_depth", "Tasks in the store, by status.",
                            ["status"], registry=r)
        self._oldest_due = Gauge(
            "offload_queue_oldest_due_seconds",
            "How long the longest-waiting due task (pending or retrying, its due time"
            " passed) has waited since it became due; 0 when none. Tasks scheduled"
            " ahead are not counted until due.", registry=r)
        self._executors = Gauge("offload_executors", "Executor processes, by state.",
                                ["state"], registry=r)
        self._slots = Gauge("offload_executor_slots",
                            "Task places in the executors that take tasks: busy (tasks running)"
                            " and free (tasks that could start now; an empty executor counts"
                            " async_concurrency).", ["state"], registry=r)
        self._restarts = Counter("offload_executor_restarts",
                                 "Executors replaced, by reason.", ["reason"], registry=r)
        self._http = Counter("offload_http_requests", "HTTP requests served, by route template.",
                             ["method", "route", "status"], registry=r)
        self._http_s = Histogram("offload_http_request_duration_seconds",
                                 "HTTP request latency, by route template.",
                                 ["method", "route"], buckets=HTTP_BUCKETS_S, registry=r)
        self._pool_up = Gauge(POOL_UP_NAME, POOL_UP_HELP, registry=r)
        # ``schedule`` is bounded by the configured schedules.
        self._schedule_runs = Counter("offload_schedule_runs",
                                      "Runs of a schedule's slots enqueued by this pool.",
                                      ["schedule"], registry=r)
        self._schedule_skipped = Counter(
            "offload_schedule_skipped",
            "Slots passed over without a run: missed (catch_up) or overlap (the last run"
            " unfinished).",
            ["schedule", "reason"], registry=r)
        self._schedule_lag = Histogram("offload_schedule_lag_seconds",
                                       "From a schedule's slot to the start of its run.",
                                       ["schedule"], buckets=TASK_BUCKETS_S, registry=r)
        self._depth_statuses: set[str] = set()
        # labels() takes a lock and builds a key on every call; the pool records
        # several samples per task, always for the same few label sets.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        # Fixed vocabularies start at 0 so rate() and absent() work from the first scrape.
        for state in EXECUTOR_STATES:
            self._executors.labels(state=state).set(0)
        for reason in RESTART_REASONS:
            self._restarts.labels(reason=reason)
        for state in SLOT_STATES:
            self._slots.labels(state=state).set(0)

    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, looked up once per label set."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def task_submitted(self, kind: str, n: int = 1) -> None:
        """Called once tasks are durably accepted (``n`` for a batch of one kind)."""
        self._child(self._submitted, kind).inc(n)

    def task_finished(self, kind: str, outcome: str) -> None:
        """Called when a task reaches succeeded, failed (retries exhausted) or cancelled."""
        self._child(self._finished, kind, _check(outcome, OUTCOMES, "outcome")).inc()

    def task_failed_attempt(self, kind: str, reason: str) -> None:
        """Called for every failed attempt, whether or not it will be retried."""
        reason = _check(reason, FAILURE_REASONS, "failure reason")
        self._child(self._failures, kind, reason).inc()

    def task_retried(self, kind: str) -> None:
        """Called when a failed attempt is scheduled to run again."""
        self._child(self._retries, kind).inc()

    def observe_run(self, kind: str, seconds: float) -> None:
        """Called when an attempt ends (any outcome), with its run time."""
        self._child(self._run_s, kind).observe(seconds)

    def observe_queue(self, kind: str, seconds: float) -> None:
        """Called when an attempt starts, with the time since it became runnable."""
        self._child(self._queue_s, kind).observe(seconds)

    def set_queue_depth(self, counts: Mapping[str, int]) -> None:
        """Called after store counts are refreshed; statuses seen before but absent go to 0."""
        for status in self._depth_statuses.difference(counts):
            self._depth.labels(status=status).set(0)
        for status, n in counts.items():
            self._depth.labels(status=status).set(n)
        self._depth_statuses.update(counts)

    def set_oldest_due(self, seconds: float) -> None:
        """Called with the queue depth: the wait of the longest-waiting due task (0: none)."""
        self._oldest_due.set(max(0.0, seconds))

    def set_executors(self, states: Mapping[str, int]) -> None:
        """Called when executors change state; states absent from ``states`` go to 0."""
        for state in states:
            _check(state, EXECUTOR_STATES, "executor state")
        for state in EXECUTOR_STATES:
            self._executors.labels(state=state).set(states.get(state, 0))

    def set_executor_slots(self, places: Mapping[str, int]) -> None:
        """Called with the executors' task places: ``{"busy": n, "free": n}``."""
        for state in places:
            _check(state, SLOT_STATES, "slot state")
        for state in SLOT_STATES:
            self._slots.labels(state=state).set(places.get(state, 0))

    def executor_restarted(self, reason: str) -> None:
        """Called when the pool forks a replacement for an executor that ended."""
        reason = _check(reason, RESTART_REASONS, "restart reason")
        self._restarts.labels(reason=reason).inc()

    def schedules_known(self, schedules: Iterable[str]) -> None:
        """Called when the pool (re)loads its schedules: their run counts start at 0,
        so rate() and absent() work before a first run."""
        for schedule in schedules:
            self._child(self._schedule_runs, schedule)

    def schedule_runs(self, schedule: str, n: int = 1) -> None:
        """Called once a turn that enqueued ``n`` runs of ``schedule`` committed."""
        self._child(self._schedule_runs, schedule).inc(n)

    def schedule_skipped(self, schedule: str, reason: str, n: int = 1) -> None:
        """Called once a turn that passed ``n`` slots over without a run committed."""
        reason = _check(reason, SKIP_REASONS, "skip reason")
        self._child(self._schedule_skipped, schedule, reason).inc(n)

    def observe_schedule_lag(self, schedule: str, seconds: float) -> None:
        """Called when a run of ``schedule`` starts, with the time since its slot."""
        self._child(self._schedule_lag, schedule).observe(seconds)

    def observe_http(self, samples: Iterable[Sequence[object]]) -> None:
        """Called on an ``observe_http`` request; all samples or none (``ValueError``)."""
        parsed = [_sample(i, s) for i, s in enumerate(samples)]
        for (method, route, status), n in Tally(p[:3] for p in parsed).items():
            self._http.labels(method=method, route=route, status=status).inc(n)
        # labels() costs more than observe(); batches repeat a few routes many times.
        children: dict[tuple[str, str], Histogram] = {}
        for method, route, _, seconds in parsed:
            child = children.get((method, route))
            if child is None:
                child = children[method, route] = self._http_s.labels(method=method, route=route)
            child.observe(seconds)

    def render(self) -> bytes:
        """Called on a ``metrics`` request: the text exposition of every metric."""
        self._pool_up.set(1)
        return generate_latest(self.registry)
