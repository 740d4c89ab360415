"""One background call as a test sees it, and how a test mode runs it.

A ``Call`` is made from a submit spec, as the pool takes it: a hand-off's
(``BackgroundTasks._spec``) or, through ``server.Client``, one of ``POST
/tasks``. ``take`` checks each spec with the pool's own check
(``executor.pool.specs.Specs``, against the manifest of the ``task_modules``
registry), so a spec the pool would refuse raises the ``PoolError`` the
pool would answer, and ``max_retries`` and ``timeout_s`` are the pool's
choice (the spec's, else the kind's, else the settings'). A call's ``args``
and ``kwargs`` are the payload decoded by ``executor.wire.codec.decode_call``,
as an executor decodes it (a dataclass arrives as a dict, a tuple as a
list), and ``fn`` is the function an executor would run for it.

``run`` runs a call as the pool and an executor would, attempt after
attempt: each attempt is ``executor.worker.runner.run_call`` (the executor's
own code: import the function, decode the arguments, call it, encode the
result), and whether to try again is ``executor.pool.retry.should_retry``
with the call's ``max_retries`` (the task's, else ``default_max_retries``).
What a test process cannot do like an executor, it does not pretend to:
no back-off sleeps, no soft or hard time limit, no process isolation (a
crash takes the test process with it), and ``current_task_id()`` and
``progress()`` see no task (``progress`` does nothing, as outside an executor).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from config.settings import Settings
from executor.pool.retry import should_retry
from executor.pool.specs import Invalid, Specs
from executor.store.records import NewTask
from executor.wire.codec import decode_call, decode_value
from executor.wire.errors import PoolError, UnknownKind
from executor.wire.registry import Registry, resolve_ref
from executor.worker.limits import Limits
from executor.worker.runner import close_thread_loop, run_call

Status = Literal["pending", "succeeded", "failed", "cancelled"]

_ids = itertools.count(1)


def _no_time_limit(seconds: float) -> None:
    """The soft time limit an executor arms with SIGALRM: not here, where the
    signal belongs to the test process (and pytest-timeout)."""


@dataclass(eq=False)
class Call:
    """A call handed off (or submitted by kind) in a test mode.

    ``kind``, ``args``, ``kwargs`` and ``fn`` are what an executor would
    receive and run (``fn`` is ``None`` for a kind no task module registers,
    which fails as ``UnknownKind`` when run). ``status`` is ``pending``
    until it ran, then ``succeeded`` (``result``, decoded from the
    executor's reply) or ``failed`` (``error``, the exception of its last
    attempt; ``outcome`` is the error as its record shows it), or
    ``cancelled``. ``attempts`` counts the attempts made.
    """

    kind: str
    args: list[Any]
    kwargs: dict[str, Any]
    fn: Callable[..., Any] | None
    id: str
    task: NewTask = field(repr=False)
    registry: Registry = field(repr=False)
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    status: Status = "pending"
    attempts: int = 0
    result: Any = None
    error: BaseException | None = None
    outcome: dict[str, Any] | None = field(default=None, repr=False)  # the last DONE body

    @property
    def group_id(self) -> str | None:
        """The id of the calls of one ``BackgroundTasks`` (``None`` for a task by kind)."""
        return self.task.group_id

    @property
    def seq(self) -> int:
        """Its place in its group."""
        return self.task.seq

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt, as the pool chose them."""
        return self.task.max_retries

    def __repr__(self) -> str:
        shown = ", ".join([*map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        return f"<Call {self.kind}({shown}) {self.status}, attempts={self.attempts}>"


class _Manifest:
    """What ``Specs`` reads of a pool (``executor.pool.port.SpecSource``): the
    manifest of the registered kinds, and the settings."""

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.manifest = registry.manifest()
        self.settings = settings

    def learn_concurrency(self, kind: str, concurrency: int) -> None:
        """Calls run one after another in test modes: nothing to place."""


def take(specs: list[dict[str, Any]], settings: Settings, registry: Registry) -> list[Call]:
    """The calls of ``specs``, checked as the pool checks a submit (all or
    nothing). Raises the ``PoolError`` the pool would answer (``unknown_kind``,
    ``invalid`` naming ``tasks[i].<field>``)."""
    check = Specs(_Manifest(registry, settings))
    now = time.time()
    tasks: list[NewTask] = []
    for i, spec in enumerate(specs):
        try:
            tasks.append(check.task(i, spec, now))
        except Invalid as exc:
            raise PoolError(exc.code, exc.message, exc.field) from None
    return [_call(task, registry, now) for task in tasks]


def _call(task: NewTask, registry: Registry, now: float) -> Call:
    args, kwargs = decode_call(task.payload)
    fn: Callable[..., Any] | None = None
    if task.kind in registry:  # as the executor looks it up: the kind first, then ref
        fn = registry.get(task.kind).fn
    elif task.ref:
        try:
            fn = resolve_ref(task.ref)
        except UnknownKind:  # add_task checked it imports; it may have gone since
            fn = None
    return Call(kind=task.kind, args=args, kwargs=kwargs, fn=fn,
                id=f"test-{os.getpid()}-{next(_ids)}", task=task, registry=registry,
                created_at=now)


def run(call: Call, settings: Settings) -> None:
    """Run ``call`` until it succeeds or has no retries left; sets its
    ``status``, ``attempts``, ``result``, ``error`` and ``outcome``. Never
    raises (the failure is in ``call.error``). Blocks; run it off any event loop."""
    limits = Limits(max_result_bytes=settings.max_result_bytes,
                    max_frame_bytes=settings.max_frame_bytes)
    retry_on: dict[str, tuple[type[BaseException], ...] | None] = {}
    task = call.task
    call.started_at = time.time()
    while True:
        call.attempts += 1
        desc = {"id": call.id, "kind": task.kind, "ref": task.ref, "payload": task.payload,
                "timeout_s": task.timeout_s, "attempt": call.attempts}
        done, exc = run_call(desc, call.registry, limits, retry_on, _no_time_limit)
        call.outcome = done
        if done["ok"]:
            call.status, call.result, call.error = "succeeded", decode_value(done["result"]), None
            call.finished_at = time.time()
            return
        call.error = exc
        if not should_retry(call.attempts, task.max_retries, done["retryable"]):
            call.status, call.finished_at = "failed", time.time()
            return


def run_in_order(calls: list[Call], settings: Settings) -> None:
    """Run ``calls`` one after another, each to its end (a failed one does not
    stop the next), then close the event loop ``async def`` calls used in
    this thread."""
    try:
        for call in calls:
            if call.status == "pending":
                run(call, settings)
    finally:
        close_thread_loop()


def failure(failed: list[Call]) -> BaseException:
    """The exception a test sees for ``failed`` calls: the exception of the
    one call, or a group of them, each with a note naming the call."""
    errors: list[BaseException] = []
    for call in failed:
        error = call.error or RuntimeError(f"{call.kind} failed")
        error.add_note(f"offload: background call {call!r} failed "
                       f"(attempts {call.attempts}, max_retries {call.max_retries})")
        errors.append(error)
    if len(errors) == 1:
        return errors[0]
    return BaseExceptionGroup(f"{len(errors)} background calls failed", errors)


def to_wire(call: Call) -> dict[str, Any]:
    """``call``'s record as the pool sends it (``executor.pool.ops.record_to_wire``)."""
    outcome = call.outcome or {}
    task = call.task
    return {"id": call.id, "kind": call.kind, "status": call.status,
            "attempts": call.attempts, "max_retries": task.max_retries,
            "timeout_s": task.timeout_s, "priority": task.priority,
            "not_before": task.not_before, "created_at": call.created_at,
            "started_at": call.started_at, "finished_at": call.finished_at,
            "result": outcome.get("result") if call.status == "succeeded" else None,
            "error": outcome.get("error") if call.status == "failed" else None,
            "progress": None, "cancelled_by": "api" if call.status == "cancelled" else None,
            "group_id": task.group_id, "seq": task.seq,
            "idempotency_key": task.idempotency_key}
