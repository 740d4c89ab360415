"""The HTTP API's bodies and query strings, declared once as msgspec structs.

The same declarations validate requests (``server.validate`` decodes bodies
straight into these types, and converts query strings with them) and make
the OpenAPI document (``server.openapi`` turns them into JSON Schema). A
bound written here is the bound enforced and the bound documented.

msgspec rather than pydantic: it decodes and validates a ``POST /tasks`` body
in one pass of C code, has no dependencies of its own, and writes JSON Schema
2020-12, the dialect of OpenAPI 3.1. Response types are used for the
document only: handlers build responses as dicts (``server.records``).

Bounds that depend on the clock or on settings (``eta`` at most ten years
ahead, ``wait`` at most ``long_poll_max_s``) are checked in
``server.validate``; ``wait``'s struct is made per bound (``task_query``).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from config.settings import MAX_RETRIES, MAX_TIMEOUT_S, MIN_TIMEOUT_S
from executor.pool.reruns import RETRY_LIMIT_MAX
from executor.pool.specs import PRIORITY_MAX, PRIORITY_MIN
from executor.store.records import Status

MAX_BATCH = 1000
MAX_KEY_CHARS = 200
MAX_KIND_CHARS = 200
MAX_DELAY_S = 10 * 366 * 86400.0
"""How far ahead a task may be scheduled (``delay_s``, ``eta``): ten years.
Beyond that a typo (milliseconds for seconds) would park a task for ever."""
LIST_LIMIT_MAX = 500
LIST_LIMIT_DEFAULT = 50

RETRY_LIMIT_DEFAULT = 100

Kind = Annotated[str, Meta(min_length=1, max_length=MAX_KIND_CHARS,
                           description="a registered task kind")]
Key = Annotated[str, Meta(min_length=1, max_length=MAX_KEY_CHARS)]
Epoch = Annotated[float, Meta(ge=0, description="seconds since the epoch")]


class TaskBody(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``POST /tasks`` (and each item of ``POST /tasks/batch``): a call of ``kind``.

    Options left out take the kind's ``@task`` options, then the settings."""

    kind: Kind
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    max_retries: Annotated[int, Meta(ge=0, le=MAX_RETRIES)] | UnsetType = UNSET
    timeout_s: Annotated[float, Meta(ge=MIN_TIMEOUT_S, le=MAX_TIMEOUT_S)] | UnsetType = UNSET
    delay_s: Annotated[float, Meta(ge=0, le=MAX_DELAY_S, description=(
        "run no sooner than this many seconds from now (not with eta)"))] | UnsetType = UNSET
    eta: Annotated[float, Meta(ge=0, description=(
        "run no sooner than this time, in seconds since the epoch, at most ten years "
        "from now (not with delay_s)"))] | UnsetType = UNSET
    priority: Annotated[int, Meta(ge=PRIORITY_MIN, le=PRIORITY_MAX,
                                  description="higher runs first")] | UnsetType = UNSET
    idempotency_key: Annotated[Key, Meta(description=(
        "a second submit with this key returns the first task"))] | UnsetType = UNSET


class BatchBody(Struct, forbid_unknown_fields=True):
    """``POST /tasks/batch``: up to 1000 task bodies, stored all or nothing."""

    tasks: Annotated[list[TaskBody], Meta(min_length=1, max_length=MAX_BATCH)]


class RetryFilter(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``POST /tasks/retry``: which failed tasks to run again, oldest failure first."""

    kind: Kind | UnsetType = UNSET
    finished_after: Annotated[Epoch, Meta(description=(
        "only tasks that failed at or after this time"))] | UnsetType = UNSET
    finished_before: Annotated[Epoch, Meta(description=(
        "only tasks that failed before this time"))] | UnsetType = UNSET
    limit: Annotated[int, Meta(ge=1, le=RETRY_LIMIT_MAX, description=(
        "at most this many tasks in one call"))] = RETRY_LIMIT_DEFAULT


# -- query strings (converted from text: ``strict=False``) ---------------------

class ListQuery(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``GET /tasks``: a page of records, newest first."""

    status: Status | UnsetType = UNSET
    kind: Kind | UnsetType = UNSET
    limit: Annotated[int, Meta(ge=1, le=LIST_LIMIT_MAX)] = LIST_LIMIT_DEFAULT
    cursor: Annotated[str, Meta(description="next_cursor of the previous page")] = ""


class CancelQuery(Struct, forbid_unknown_fields=True):
    """``DELETE /tasks/{id}``: ``force`` also kills a running task's executor."""

    force: bool = False


class NoQuery(Struct, forbid_unknown_fields=True):
    """Routes that take no query parameters (``POST /tasks/{id}/retry``)."""


@functools.lru_cache(maxsize=8)
def task_query(long_poll_max_s: float) -> type[Struct]:
    """``GET /tasks/{id}``'s query struct: ``wait`` long-polls up to ``long_poll_max_s``."""
    wait = Annotated[float, Meta(ge=0, le=long_poll_max_s, description=(
        "answer once the task has finished or after this many seconds"))]
    return msgspec.defstruct("TaskQuery", [("wait", wait | UnsetType, UNSET)],
                             forbid_unknown_fields=True)


# -- responses (for the document) ----------------------------------------------

Reason = Literal["error", "crash", "timeout", "memory", "lost"]


class TaskError(Struct):
    """Why the task's last attempt failed."""

    reason: Reason
    message: str
    traceback: str


class Progress(Struct):
    """What the task last reported with ``executor.progress``."""

    value: Annotated[float, Meta(ge=0, le=1)]
    message: str


class TaskRecord(Struct):
    """A task as the API shows it. ``result`` is the return value made JSON-safe."""

    id: str
    kind: str
    status: Status
    attempts: int
    max_retries: int
    timeout_s: float
    priority: int
    not_before: float
    created_at: float
    started_at: float | None
    finished_at: float | None
    progress: Progress | None
    error: TaskError | None
    cancelled_by: str | None
    result: Any


class TaskPage(Struct):
    """``GET /tasks``: a page, newest first; ``next_cursor`` is null on the last one."""

    tasks: list[TaskRecord]
    next_cursor: str | None


class TaskRecords(Struct):
    """``POST /tasks/batch``: the records, in the order sent."""

    tasks: list[TaskRecord]


class Retried(Struct):
    """``POST /tasks/retry``: how many failed tasks were put back to run, and which."""

    retried: int
    ids: list[str]


class ExecutorRow(Struct):
    """One executor process. ``running``: the ids of the tasks it runs
    (several for ``async def`` tasks); ``task_id``: the first of them, or
    null; ``free``: how many more tasks it could start now
    (``async_concurrency`` when it has none, 0 when it runs a one-at-a-time
    task or is stopping)."""

    pid: int | None
    state: Literal["starting", "idle", "busy", "stopping", "dead"]
    task_id: str | None
    running: list[str]
    free: int
    tasks_run: int
    rss_mb: float | None


class QueueStats(Struct):
    """``GET /queue/stats``."""

    counts: dict[Status, int]
    queue_depth: int
    oldest_due_s: float
    executors: list[ExecutorRow]


class ScheduleRun(Struct):
    """A schedule's last run: its slot, its task, and the task's status (null
    once the task was purged after ``result_ttl_s``)."""

    slot: float
    task_id: str
    status: Status | None


class ScheduleRow(Struct):
    """One periodic task (README, "Periodic tasks"); times in seconds since the epoch."""

    name: str
    kind: str
    spec: str
    source: str
    cron: str | None
    every_s: float | None
    tz: str
    catch_up: Literal["latest", "skip", "all"]
    max_delay_s: float
    overlap: Literal["allow", "skip", "queue"]
    next_slot: float
    last_slot: float | None
    last_run: ScheduleRun | None


class Schedules(Struct):
    """``GET /schedules``: every schedule the pool runs, by name."""

    schedules: list[ScheduleRow]


class Healthy(Struct):
    """``GET /healthz``."""

    status: Literal["ok"]


class Ready(Struct):
    """``GET /readyz`` when ready."""

    status: Literal["ready"]
    executors_up: int
    executors_wanted: int


class ErrorDetail(Struct):
    """``field`` names the request field at fault (``tasks[3].args``), or is null."""

    code: str
    message: str
    field: str | None


class ErrorBody(Struct):
    """Every error answer."""

    error: ErrorDetail


RESPONSES: tuple[type[Struct], ...] = (TaskRecord, TaskPage, TaskRecords, Retried,
                                       QueueStats, Schedules, Healthy, Ready, ErrorBody)
REQUESTS: tuple[type[Struct], ...] = (TaskBody, BatchBody, RetryFilter)
