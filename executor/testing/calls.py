"""One background call as a test sees it, and how a test mode runs it.

A ``Call`` is made from the submit spec a hand-off would send to the pool
(``BackgroundTasks._spec``): its ``args`` and ``kwargs`` are the spec's
payload decoded by ``executor.wire.codec.decode_call``, as an executor
decodes it (a dataclass arrives as a dict, a tuple as a list), and ``fn``
is the function an executor would import for it.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from config.settings import Settings
from executor.pool.retry import should_retry
from executor.wire.codec import decode_call, decode_value
from executor.wire.errors import UnknownKind
from executor.wire.registry import Registry, resolve_ref
from executor.worker.runner import Limits, close_thread_loop, run_call

Status = Literal["pending", "succeeded", "failed"]

_NO_REGISTRY = Registry()  # every background call carries its function's ref
_ids = itertools.count(1)


def _no_time_limit(seconds: float) -> None:
    """The soft time limit an executor arms with SIGALRM: not here, where the
    signal belongs to the test process (and pytest-timeout)."""


@dataclass(eq=False)
class Call:
    """A background call handed off in a test mode.

    ``kind``, ``args``, ``kwargs`` and ``fn`` are what an executor would
    receive and run. ``status`` is ``pending`` until it ran, then
    ``succeeded`` (``result``, as decoded from the executor's reply) or
    ``failed`` (``error``, the exception of its last attempt).
    ``attempts`` counts the attempts made.
    """

    kind: str
    args: list[Any]
    kwargs: dict[str, Any]
    fn: Callable[..., Any] | None
    id: str
    group_id: str
    seq: int
    max_retries: int
    spec: dict[str, Any] = field(repr=False)
    status: Status = "pending"
    attempts: int = 0
    result: Any = None
    error: BaseException | None = None

    @classmethod
    def from_spec(cls, spec: dict[str, Any], settings: Settings) -> Call:
        """The call a submit spec stands for; ``settings`` give the defaults
        the pool would apply (``default_max_retries``)."""
        args, kwargs = decode_call(spec["payload"])
        try:
            fn: Callable[..., Any] | None = resolve_ref(spec["ref"])
        except UnknownKind:  # add_task checked it imports; it may have gone since
            fn = None
        max_retries = spec.get("max_retries")
        return cls(kind=spec["kind"], args=args, kwargs=kwargs, fn=fn,
                   id=f"test-{os.getpid()}-{next(_ids)}", group_id=spec["group_id"],
                   seq=spec["seq"], spec=spec,
                   max_retries=settings.default_max_retries if max_retries is None
                   else max_retries)

    def __repr__(self) -> str:
        shown = ", ".join([*map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        return f"<Call {self.kind}({shown}) {self.status}, attempts={self.attempts}>"


def run(call: Call, settings: Settings) -> None:
    """Run ``call`` until it succeeds or has no retries left; sets its
    ``status``, ``attempts``, ``result`` and ``error``. Never raises (the
    failure is in ``call.error``). Blocks; run it off any event loop."""
    limits = Limits(max_result_bytes=settings.max_result_bytes,
                    max_frame_bytes=settings.max_frame_bytes)
    retry_on: dict[str, tuple[type[BaseException], ...] | None] = {}
    timeout_s = call.spec.get("timeout_s", settings.default_timeout_s)
    while True:
        call.attempts += 1
        desc = {"id": call.id, "kind": call.kind, "ref": call.spec.get("ref"),
                "payload": call.spec["payload"], "timeout_s": timeout_s,
                "attempt": call.attempts}
        done, exc = run_call(desc, _NO_REGISTRY, limits, retry_on, _no_time_limit)
        if done["ok"]:
            call.status, call.result, call.error = "succeeded", decode_value(done["result"]), None
            return
        call.error = exc
        if not should_retry(call.attempts, call.max_retries, done["retryable"]):
            call.status = "failed"
            return


def run_in_order(calls: list[Call], settings: Settings) -> None:
    """Run ``calls`` one after another, each to its end (a failed one does not
    stop the next), then close the event loop ``async def`` calls used in
    this thread."""
    try:
        for call in calls:
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
