"""Running one task in an executor: resolve, call, classify how it ended.

The executor's loop (``executor.worker.aio``) takes ``RUN`` frames from its
pipe and uses this module for each task: ``prepare`` resolves the function
and decodes the arguments, ``run_sync`` runs a ``def`` task (alone in its
executor), and ``settle`` / ``fail`` turn a return value or an exception
into the ``DONE`` body.

Time limits: a ``def`` task's soft limit raises ``TaskTimeout`` in it
(SIGALRM, armed here, handled as ``executor.worker.limits`` set it up); the
hard limit is enforced from outside by the pool killing the executor's
process group. Memory: a runaway allocation under ``memory_limit_mb``
raises ``MemoryError`` here and the task fails ``memory``.

Retries: ``DONE.retryable`` is false when another attempt cannot do better:
the result cannot be encoded or is too large, the kind is unknown, the
exception is not in the kind's ``retry_on``, or the stored arguments do not
bind to the function's parameters (a ``TypeError`` of the call itself, e.g.
after a deploy changed the signature; a ``TypeError`` raised inside the task
is retried like any exception).

How tasks reach the executor: ``executor.worker.frames``; its set-up and
recycling: ``executor.worker.limits``.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import signal
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from executor.wire.callcheck import CallCheck, params_of
from executor.wire.codec import decode_call, encode_value
from executor.wire.errors import Retry, TaskTimeout, UnknownKind
from executor.wire.registry import Registry, is_async, resolve_ref, task_def
from executor.worker.limits import Limits


def _error(reason: str, exc: BaseException, message: str | None = None) -> dict[str, str]:
    return {"reason": reason, "message": message or f"{type(exc).__name__}: {exc}",
            "traceback": "".join(traceback.format_exception(exc))}


def _retry_delay_s(value: object) -> float | None:
    """``Retry.delay_s`` as the pool can use it: a finite number of seconds
    (negative means now); anything else (``None``, NaN, a string) means the
    kind's back-off. Checked here, where user values are, not in the pool."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    delay = float(value)
    return max(0.0, delay) if math.isfinite(delay) else None


@dataclass(frozen=True)
class Call:
    """A task ready to run: its function, decoded arguments and how it shares."""

    fn: Any
    args: list[Any]
    kwargs: dict[str, Any]
    is_async: bool
    concurrency: int  # how many tasks may run beside it, itself included (1: alone)
    kind_concurrency: int  # its kind's (1 for def), whatever the pool placed it with


def new_done(desc: dict[str, Any]) -> dict[str, Any]:
    """A ``DONE`` body for ``desc``, not yet successful (without recycle/rss)."""
    return {"id": desc["id"], "ok": False, "result": None, "error": None,
            "retry_delay_s": None, "retryable": True}


def prepare(desc: dict[str, Any], registry: Registry, limits: Limits,
            retry_on: dict[str, tuple[type[BaseException], ...] | None]) -> Call:
    """Resolve ``desc``'s function and decode its arguments.

    ``concurrency`` is 1 for a ``def`` function and for a descriptor with
    ``solo`` set (the pool runs a task alone after a crash it may have
    caused); else the kind's ``@task(concurrency=)``, else
    ``limits.async_concurrency``, never above the descriptor's
    ``concurrency`` (what the pool placed it for). Raises ``UnknownKind``
    and whatever decoding raises: ``fail`` turns them into the ``DONE``.
    """
    kind = desc["kind"]
    ref = desc.get("ref")
    if kind in registry:
        d = registry.get(kind)
        fn, retry_on[kind], own = d.fn, d.options.retry_on, d.options.concurrency
    elif ref:
        fn = resolve_ref(ref)
        found = task_def(fn)  # a @task whose module is not in task_modules
        retry_on[kind] = found.options.retry_on if found is not None else None
        own = found.options.concurrency if found is not None else None
    else:
        registry.get(kind)  # raises UnknownKind with close matches
        raise AssertionError("unreachable")
    args, kwargs = decode_call(desc["payload"])
    asynchronous = is_async(fn)
    kind_concurrency = (own or limits.async_concurrency) if asynchronous else 1
    concurrency = 1
    if asynchronous and not desc.get("solo"):
        placed = desc.get("concurrency")
        concurrency = max(1, min(kind_concurrency, placed if isinstance(placed, int)
                                 else kind_concurrency))
    return Call(fn, args, kwargs, asynchronous, concurrency, kind_concurrency)


def settle(done: dict[str, Any], value: Any, limits: Limits) -> BaseException | None:
    """Record the task's return ``value`` in ``done``: encoded, or a
    non-retryable error if it cannot be encoded or is over ``max_result_bytes``
    (then returns the exception that says so)."""
    try:
        result = encode_value(value)
    except TypeError as exc:
        done["error"] = _error("error", exc)
        done["retryable"] = False
        return exc
    if len(result) > limits.max_result_bytes:
        done["error"] = {"reason": "error", "traceback": "",
                         "message": f"result of {len(result)} bytes exceeds max_result_bytes "
                                    f"({limits.max_result_bytes}); store large results "
                                    f"elsewhere and return a reference"}
        done["retryable"] = False
        return ValueError(done["error"]["message"])
    done["ok"], done["result"] = True, result
    return None


def fail(done: dict[str, Any], exc: BaseException, kind: str, limits: Limits,
         retry_on: dict[str, tuple[type[BaseException], ...] | None]) -> None:
    """Record in ``done`` the error ``exc`` that ended the task (reason,
    message, traceback, and whether another attempt can do better)."""
    if isinstance(exc, TaskTimeout):
        done["error"] = _error("timeout", exc)
    elif isinstance(exc, MemoryError):
        # Raised by the allocator with no text: say which limit it hit.
        cap = (f"memory_limit_mb = {limits.memory_limit_mb}" if limits.memory_limit_mb
               else "no memory_limit_mb set")
        done["error"] = _error("memory", exc, f"MemoryError: {exc or 'out of memory'} ({cap})")
    elif isinstance(exc, Retry):
        done["error"] = _error("error", exc)
        done["retry_delay_s"] = _retry_delay_s(exc.delay_s)
    elif isinstance(exc, UnknownKind):
        done["error"] = _error("error", exc)
        done["retryable"] = False
    else:  # a task may raise anything, SystemExit included
        done["error"] = _error("error", exc)
        allowed = retry_on.get(kind)
        if allowed is not None and not isinstance(exc, allowed):
            done["retryable"] = False


def unbound(done: dict[str, Any], fn: Any, call: Call, exc: TypeError) -> bool:
    """After a ``TypeError`` of the call: if the stored arguments do not bind
    to ``fn`` (not the task's own ``TypeError``), record the non-retryable
    error in ``done`` and return True."""
    if _binds(fn, call.args, call.kwargs):
        return False  # raised by the task's own code: an error like any other
    done["error"] = _error("error", exc, f"TypeError: {exc}; the stored arguments "
                           "do not fit the function (was it changed after the task "
                           "was submitted?), so the task is not retried")
    done["retryable"] = False
    return True


def _binds(fn: Any, args: list[Any], kwargs: dict[str, Any]) -> bool:
    """Whether the call binds to ``fn``'s parameters (``True`` if the signature
    cannot be read), by the same check ``add_task`` and the pool make
    (``CallCheck``). Asked only after a ``TypeError``: a call that cannot
    bind fails the same way on every attempt; one that can raised it in the
    task's body."""
    params = params_of(fn)
    return params is None or CallCheck("", params).why(len(args), tuple(kwargs)) is None


def _arm_alarm(seconds: float) -> None:
    signal.setitimer(signal.ITIMER_REAL, seconds)


def run_sync(desc: dict[str, Any], call: Call, limits: Limits,
             retry_on: dict[str, tuple[type[BaseException], ...] | None],
             soft_limit: Callable[[float], None] = _arm_alarm,
             ) -> tuple[dict[str, Any], BaseException | None, Any]:
    """Call a ``def`` task's function under the soft limit (``soft_limit(s)``
    arms it, ``0`` disarms it; the executor's raises ``TaskTimeout`` by
    SIGALRM). Returns the ``DONE`` body, the exception the attempt ended
    with (``None`` if it succeeded), and, for a function that returned an
    awaitable (a sync wrapper of an ``async def``), that awaitable, not yet
    run: the body is then not final and the caller awaits it. Never raises."""
    done = new_done(desc)
    try:
        soft_limit(float(desc["timeout_s"]))
        try:
            value = call.fn(*call.args, **call.kwargs)
        except TypeError as exc:
            soft_limit(0)
            if unbound(done, call.fn, call, exc):
                return done, exc, None
            raise
        finally:
            soft_limit(0)
        if inspect.isawaitable(value):
            return done, None, value
        return done, settle(done, value, limits), None
    except BaseException as exc:
        fail(done, exc, desc["kind"], limits, retry_on)
        return done, exc, None


def run_call(desc: dict[str, Any], registry: Registry, limits: Limits,
             retry_on: dict[str, tuple[type[BaseException], ...] | None],
             soft_limit: Callable[[float], None] = _arm_alarm,
             ) -> tuple[dict[str, Any], BaseException | None]:
    """Run one task descriptor (``id``, ``kind``, ``ref``, ``payload``,
    ``timeout_s``) to its end, in this thread: find the function, decode its
    arguments, call it (an ``async def`` one, or an awaitable it returns, on
    this thread's loop) and encode its result, as every attempt of a task
    is run. Used by ``executor.testing``; an executor runs ``async def``
    tasks concurrently instead (``executor.worker.aio``).

    Returns the ``DONE`` body (without ``recycle``/``rss_mb``) and the
    exception the attempt ended with (``None`` when it succeeded), which
    never leaves this process. Never raises. ``retry_on`` caches each kind's
    ``retry_on``. ``soft_limit(s)`` arms the soft time limit (``0``
    disarms it); the executor's raises ``TaskTimeout`` by SIGALRM, and
    ``executor.testing`` passes one that does nothing.
    """
    done = new_done(desc)
    try:
        call = prepare(desc, registry, limits, retry_on)
    except BaseException as exc:
        fail(done, exc, desc["kind"], limits, retry_on)
        return done, exc
    done, ended, pending = run_sync(desc, call, limits, retry_on, soft_limit)
    if pending is None:
        return done, ended
    try:
        soft_limit(float(desc["timeout_s"]))
        try:
            value = _run_async(pending)
        finally:
            soft_limit(0)
        return done, settle(done, value, limits)
    except BaseException as exc:
        fail(done, exc, desc["kind"], limits, retry_on)
        return done, exc


# The event loop of ``run_call``'s ``async def`` tasks, one per thread:
# ``executor.testing`` runs calls in threads of the test process.
_loops = threading.local()


def _run_async(awaitable: Any) -> Any:
    """Run an awaitable to completion, as ``asyncio.run`` would, on this
    thread's one event loop: ``asyncio.run`` makes and closes a loop per
    call, 230 us per task here, against 25 us. Tasks the call left running
    are cancelled when it returns, as ``asyncio.run`` does."""
    loop: asyncio.AbstractEventLoop | None = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _loops.loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(await_any(awaitable))
    finally:
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        asyncio.set_event_loop(None)


async def await_any(awaitable: Any) -> Any:
    """A coroutine awaiting ``awaitable`` (a Future, a Task, any ``__await__``)."""
    return await awaitable


def close_thread_loop() -> None:
    """Close the event loop ``run_call`` ran ``async def`` tasks on in this
    thread, if any (an executor never needs to: it ends with ``os._exit``)."""
    loop: asyncio.AbstractEventLoop | None = getattr(_loops, "loop", None)
    _loops.loop = None
    if loop is not None and not loop.is_closed():
        loop.close()
