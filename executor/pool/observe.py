"""What the pool says about itself (ops ``stats``, ``health``, ``metrics``,
``observe_http``): the queue's counts from the store, its executors
(``census``), and the Prometheus text.

Each call reads the store afresh and refreshes the queue gauges from it, so
a scrape shows the queue as it is (on a shared store, the whole queue's, not
this host's part of it); the counters are this pool's own.
"""

from __future__ import annotations

import time
from typing import Any

from executor.pool import census
from executor.pool.port import PoolPort
from executor.pool.specs import Invalid


def queue_gauges(pool: PoolPort) -> tuple[dict[str, int], float]:
    """Refresh the queue gauges from the store: the counts per status, and
    how long the longest-waiting due task has waited (0.0: none)."""
    counts = pool.store.counts()
    due = pool.store.next_due()
    # the earliest due time of a waiting task: if past, the longest wait
    oldest_due_s = 0.0 if due is None else max(0.0, time.time() - due)
    pool.metrics.set_queue_depth(counts)
    pool.metrics.set_oldest_due(oldest_due_s)
    return counts, oldest_due_s


def stats(pool: PoolPort) -> dict[str, Any]:
    """The ``stats`` op: counts per status, queue depth, the oldest due
    task's wait, and this pool's executors."""
    counts, oldest_due_s = queue_gauges(pool)
    return {"counts": counts, "queue_depth": counts["pending"] + counts["retrying"],
            "oldest_due_s": round(oldest_due_s, 3),
            "executors": census.rows(pool.fleet.slots.values(),
                                     pool.settings.async_concurrency)}


def health(pool: PoolPort) -> dict[str, Any]:
    """The ``health`` op: executors up against executors wanted."""
    return {"executors_up": census.up(pool.fleet.slots.values()),
            "executors_wanted": pool.settings.executors}


def metrics(pool: PoolPort) -> dict[str, Any]:
    """The ``metrics`` op: the Prometheus text, gauges refreshed first."""
    queue_gauges(pool)
    slots = pool.fleet.slots.values()
    pool.metrics.set_executors(census.states(slots))
    pool.metrics.set_executor_slots(census.task_places(slots, pool.settings.async_concurrency))
    return {"text": pool.metrics.render().decode()}


def observe_http(pool: PoolPort, args: dict[str, Any]) -> dict[str, Any]:
    """The ``observe_http`` op: an HTTP worker's request samples into the
    pool's histograms. ``invalid`` (naming ``samples``) if they are not."""
    samples = args.get("samples")
    if not isinstance(samples, list):
        raise Invalid("invalid", "samples must be a list", "samples")
    try:
        pool.metrics.observe_http(samples)
    except ValueError as exc:
        raise Invalid("invalid", str(exc), "samples") from None
    return {}
