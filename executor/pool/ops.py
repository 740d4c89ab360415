"""The requests the pool answers on its socket (``REQUEST`` frames).

Every request is ``{"id": int, "op": str, "args": map}``; the reply carries
the same id. Errors are ``{"code", "message", "field"}`` (see
``executor.wire.errors.PoolError``). A *record* is ``record_to_wire(TaskRecord)``.

``submit``  args ``{"tasks": [spec, ...], "reply"?: "ids"}`` -> ``{"tasks": [record, ...]}``
    (``{"ids": [str, ...]}`` with ``"reply": "ids"``, as the outbox asks).
    All or nothing, durable before the reply. A spec is ``{"kind": str,
    "payload": bytes}`` (``executor.wire.codec.encode_call``) plus optional
    ``max_retries``, ``timeout_s``, ``priority``, ``not_before`` (epoch s),
    ``idempotency_key``, ``group_id``, ``seq`` and ``ref`` ("module:qualname",
    for ``BackgroundTasks`` functions that are not registered kinds), with
    ``concurrency`` when that function is ``async def`` (its
    ``@task(concurrency=)``, 0 for the ``async_concurrency`` setting).
    Missing options take the kind's ``@task`` options, then the settings.
    The call in ``payload`` must bind to the registered kind's parameters
    (as Python would bind it), else ``invalid`` with field ``tasks[i].args``
    (too many positional arguments, a required positional one missing) or
    ``tasks[i].kwargs`` (an unexpected, duplicate or positional-only keyword,
    a required keyword-only one missing); a payload that is not an encoded
    call is ``invalid``, field ``tasks[i].payload``. Specs with ``ref`` are
    not checked here (``add_task`` checked them when the call was made).
    Errors: ``unknown_kind`` (field ``tasks[i].kind``), ``invalid``;
    ``store_unavailable`` when the store cannot write or sync them (disk full,
    I/O error): nothing stored, or not known to be durable; send again.
``get``     ``{"id": str, "wait_s"?: float}`` -> record. With ``wait_s`` the
    reply waits until the task is finished or ``wait_s`` (0..3600) passes.
    A task claimed but only waiting in an executor's pipe shows ``pending``
    (its attempt not counted); one that started shows ``running``, and its
    start is stored before the reply (if no turn has yet): a pool crash after
    a reply that says ``running`` counts that attempt.
    ``not_found``; ``invalid`` (field ``wait_s``) for another wait.
``list``    ``{"status"?, "kind"?, "limit"?, "cursor"?}`` -> ``{"tasks", "next_cursor"}``.
``cancel``  ``{"id": str, "force"?: bool, "by"?: str}`` -> record (status
    ``cancelled``). ``not_found``; ``conflict`` if finished, or running without force.
``retry``   ``{"id": str}`` -> record: a failed or cancelled task back to
    ``pending`` as the same task, attempts reset (``executor.pool.reruns``).
    ``not_found``; ``conflict`` if it has not ended, succeeded, or is still
    being stopped.
``retry_failed`` ``{"kind"?, "finished_after"?, "finished_before"?, "limit"?: 1..1000}``
    -> ``{"ids": [str, ...]}``: up to ``limit`` failed tasks matching, oldest
    failure first, put back as ``retry`` does.
``stats``   ``{}`` -> ``{"counts": {status: n}, "queue_depth": n, "oldest_due_s": s,
    "executors": [{"pid", "state", "task_id", "running", "free", "tasks_run", "rss_mb"}]}``
    (``oldest_due_s``: how long the longest-waiting due task has waited, 0
    when none; ``running``: ids of the executor's running tasks, ``task_id``
    the first of them or null; ``free``: how many more tasks it could start
    now, ``async_concurrency`` when it has none, 0 for one running a
    one-at-a-time task or stopping; ``rss_mb`` is null until the executor
    has run a task).
``kinds``   ``{}`` -> ``{"kinds": {kind: {"max_retries", "timeout_s", "retry_backoff_s",
    "retry_backoff_max_s", "concurrency", "async", "params"}}}``: the template's manifest
    (``executor.worker.template``); ``params`` is ``[[name, kind, has_default], ...]``
    (``kind`` 0..4, see ``executor.wire.callcheck.params_of``) or ``None``.
``schedules`` ``{}`` -> ``{"schedules": [{"name", "kind", "spec", "source", "cron",
    "every_s", "tz", "catch_up", "max_delay_s", "overlap", "next_slot", "last_slot",
    "last_run": {"slot", "task_id", "status"} | None}, ...]}``: the schedules the pool
    runs (``executor.pool.schedules``); times in seconds since the epoch;
    ``last_run.status`` is ``None`` once its task was purged.
``health``  ``{}`` -> ``{"executors_up": n, "executors_wanted": n}``.
``metrics`` ``{}`` -> ``{"text": str}``: Prometheus text of every metric.
``observe_http`` ``{"samples": [[method, route, status, seconds], ...]}`` -> ``{}``:
    HTTP workers hand their request observations to the pool, which owns
    every metric (see ``metrics``).
"""

from __future__ import annotations

from typing import Any

from executor.store.records import TaskRecord

_WIRE_FIELDS = ("id", "kind", "status", "attempts", "max_retries", "timeout_s", "priority",
                "not_before", "created_at", "started_at", "finished_at", "result", "error",
                "progress", "cancelled_by", "group_id", "seq", "idempotency_key")


def record_to_wire(rec: TaskRecord) -> dict[str, Any]:
    """The record as sent on the socket (``result`` stays codec bytes)."""
    return {name: getattr(rec, name) for name in _WIRE_FIELDS}
