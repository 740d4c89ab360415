"""The executor: a forked child that runs one task at a time.

Contract with the pool (frames of ``executor.wire.protocol`` on two pipes):
for each ``RUN`` it reads, it sends ``STARTED``, any number of
``PROGRESS``, then exactly one ``DONE``. It exits with ``os._exit``:
0 on EOF, ``STOP``, SIGTERM between tasks, or when it asks to be recycled
(``DONE.recycle`` set); any other ending is a crash the pool records.

Prefetch: the pool may write the next task while this one runs. The
executor takes one frame at a time, holding ``flock`` on its end of the pipe;
the pool holds another open file description of the same pipe and may take
a waiting frame back under the same lock (``Pool._steal``), so a task never
waits long behind a slow one, and never runs twice.

Time limits: the soft limit raises ``TaskTimeout`` in the task (SIGALRM);
the hard limit is enforced from outside by the pool killing this process
group. Memory: ``memory_limit_mb`` caps the address space (RLIMIT_AS), so a
runaway allocation raises ``MemoryError`` here and the task fails ``memory``.

Retries: ``DONE.retryable`` is false when another attempt cannot do better:
the result cannot be encoded or is too large, the kind is unknown, the
exception is not in the kind's ``retry_on``, or the stored arguments do not
bind to the function's parameters (a ``TypeError`` of the call itself, e.g.
after a deploy changed the signature; a ``TypeError`` raised inside the task
is retried like any exception).

Frame size: the pool kills an executor whose frame is over
``max_frame_bytes`` (a broken protocol), so nothing written here may be:
``executor.worker.doneframe`` builds every ``DONE`` frame within the limit.
"""

from __future__ import annotations

import asyncio
import fcntl
import inspect
import math
import os
import random
import resource
import select
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType as PyFrame
from typing import Any, NoReturn

from executor.wire.callcheck import CallCheck, params_of
from executor.wire.codec import decode_call, encode_value
from executor.wire.errors import Retry, TaskTimeout, UnknownKind
from executor.wire.protocol import (
    HEADER_SIZE,
    FrameType,
    decode_body,
    encode,
    parse_header,
    write_all,
)
from executor.wire.registry import Registry, resolve_ref, task_def
from executor.worker import context
from executor.worker.doneframe import done_frame

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


@dataclass(frozen=True)
class Limits:
    """What an executor enforces on itself; sent by the pool with ``SPAWN``."""

    max_tasks: int = 0  # 0 = never recycle by count
    max_memory_mb: int = 0
    memory_limit_mb: int = 0
    max_result_bytes: int = 1_048_576
    max_frame_bytes: int = 8 * 1024 * 1024
    nice: int = 0  # added to the executor's nice value (lower CPU priority)


def rss_mb() -> float:
    """Resident memory of this process in MiB (from /proc). Read after every
    task, so the file stays open: one ``pread`` (2 us) instead of an open,
    read and close (30 us)."""
    pid = os.getpid()
    if _State.statm_pid != pid:  # /proc/self is resolved at open: not a parent's
        _State.statm_fd, _State.statm_pid = os.open("/proc/self/statm", os.O_RDONLY), pid
    return int(os.pread(_State.statm_fd, 128, 0).split()[1]) * _PAGE_MB


class _State:
    in_task = False
    stop_requested = False
    statm_fd = -1
    statm_pid = 0


# The event loop of ``async def`` tasks, one per thread: an executor has one
# thread; ``executor.testing`` runs calls in threads of the test process.
_loops = threading.local()


def _on_term(signum: int, frame: PyFrame | None) -> None:
    # Between tasks: leave now. During a task: finish it, then leave.
    if not _State.in_task:
        os._exit(0)
    _State.stop_requested = True


def _on_alarm(signum: int, frame: PyFrame | None) -> None:
    raise TaskTimeout("soft time limit exceeded")


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


def _call(fn: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        return _run_async(result)
    return result


def _run_async(awaitable: Any) -> Any:
    """Run an ``async def`` task to completion, as ``asyncio.run`` would, on
    this executor's one event loop: ``asyncio.run`` makes and closes a loop
    per call, 230 us per task here, against 25 us. Tasks the call left
    running are cancelled when it returns, as ``asyncio.run`` does."""
    loop: asyncio.AbstractEventLoop | None = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _loops.loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_await(awaitable))
    finally:
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        asyncio.set_event_loop(None)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def close_thread_loop() -> None:
    """Close the event loop ``async def`` tasks ran on in this thread, if any
    (an executor never needs to: it ends with ``os._exit``)."""
    loop: asyncio.AbstractEventLoop | None = getattr(_loops, "loop", None)
    _loops.loop = None
    if loop is not None and not loop.is_closed():
        loop.close()


def _arm_alarm(seconds: float) -> None:
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _binds(fn: Any, args: list[Any], kwargs: dict[str, Any]) -> bool:
    """Whether the call binds to ``fn``'s parameters (``True`` if the signature
    cannot be read), by the same check ``add_task`` and the pool make
    (``CallCheck``). Asked only after a ``TypeError``: a call that cannot
    bind fails the same way on every attempt; one that can raised it in the
    task's body."""
    params = params_of(fn)
    return params is None or CallCheck("", params).why(len(args), tuple(kwargs)) is None


def run_call(desc: dict[str, Any], registry: Registry, limits: Limits,
             retry_on: dict[str, tuple[type[BaseException], ...] | None],
             soft_limit: Callable[[float], None] = _arm_alarm,
             ) -> tuple[dict[str, Any], BaseException | None]:
    """Run one task descriptor (``id``, ``kind``, ``ref``, ``payload``,
    ``timeout_s``): find the function, decode its arguments, call it and
    encode its result, as every attempt of a task is run.

    Returns the ``DONE`` body (without ``recycle``/``rss_mb``) and the
    exception the attempt ended with (``None`` when it succeeded), which
    never leaves this process. Never raises. ``retry_on`` caches each kind's
    ``retry_on``. ``soft_limit(s)`` arms the soft time limit (``0``
    disarms it); the executor's raises ``TaskTimeout`` by SIGALRM, and
    ``executor.testing`` passes one that does nothing.
    """
    done: dict[str, Any] = {"id": desc["id"], "ok": False, "result": None, "error": None,
                            "retry_delay_s": None, "retryable": True}
    try:
        kind = desc["kind"]
        ref = desc.get("ref")
        if kind in registry:
            d = registry.get(kind)
            fn, retry_on[kind] = d.fn, d.options.retry_on
        elif ref:
            fn = resolve_ref(ref)
            found = task_def(fn)  # a @task whose module is not in task_modules
            retry_on[kind] = found.options.retry_on if found is not None else None
        else:
            registry.get(kind)  # raises UnknownKind with close matches
        args, kwargs = decode_call(desc["payload"])
        soft_limit(float(desc["timeout_s"]))
        try:
            value = _call(fn, args, kwargs)
        except TypeError as exc:
            soft_limit(0)
            if _binds(fn, args, kwargs):
                raise  # raised by the task's own code: an error like any other
            done["error"] = _error("error", exc, f"TypeError: {exc}; the stored arguments "
                                   "do not fit the function (was it changed after the task "
                                   "was submitted?), so the task is not retried")
            done["retryable"] = False
            return done, exc
        finally:
            soft_limit(0)
        try:
            result = encode_value(value)
        except TypeError as exc:
            done["error"] = _error("error", exc)
            done["retryable"] = False
            return done, exc
        if len(result) > limits.max_result_bytes:
            done["error"] = {"reason": "error", "traceback": "",
                             "message": f"result of {len(result)} bytes exceeds max_result_bytes "
                                        f"({limits.max_result_bytes}); store large results "
                                        f"elsewhere and return a reference"}
            done["retryable"] = False
            return done, ValueError(done["error"]["message"])
        done["ok"], done["result"] = True, result
        return done, None
    except TaskTimeout as exc:
        done["error"] = _error("timeout", exc)
        return done, exc
    except MemoryError as exc:
        # Raised by the allocator with no text: say which limit it hit.
        cap = (f"memory_limit_mb = {limits.memory_limit_mb}" if limits.memory_limit_mb
               else "no memory_limit_mb set")
        done["error"] = _error("memory", exc, f"MemoryError: {exc or 'out of memory'} ({cap})")
        return done, exc
    except Retry as exc:
        done["error"] = _error("error", exc)
        done["retry_delay_s"] = _retry_delay_s(exc.delay_s)
        return done, exc
    except UnknownKind as exc:
        done["error"] = _error("error", exc)
        done["retryable"] = False
        return done, exc
    except BaseException as exc:  # a task may raise anything, SystemExit included
        done["error"] = _error("error", exc)
        allowed = retry_on.get(desc["kind"])
        if allowed is not None and not isinstance(exc, allowed):
            done["retryable"] = False
        return done, exc


def _read_exact(fd: int, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        try:
            chunk = os.read(fd, n - len(out))
        except BlockingIOError:
            select.select([fd], [], [])
            continue
        if not chunk:
            raise EOFError
        out += chunk
    return bytes(out)


def next_frame(fd: int, max_frame_bytes: int) -> tuple[FrameType, dict[str, Any]] | None:
    """Block until the next frame is taken from the pipe ``fd``; ``None`` on EOF.

    Takes exactly one frame, under ``flock``: a frame the pool took back in
    the meantime is simply not there any more.
    """
    while True:
        select.select([fd], [], [])
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            try:
                header = os.read(fd, HEADER_SIZE)
            except BlockingIOError:
                continue  # taken back by the pool
            if not header:
                return None
            try:
                header += _read_exact(fd, HEADER_SIZE - len(header))
                ftype, length = parse_header(header, max_frame_bytes)
                return ftype, decode_body(_read_exact(fd, length))
            except EOFError:
                return None
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def run_executor(rfd: int, wfd: int, registry: Registry, limits: Limits) -> NoReturn:
    """Serve ``RUN`` frames from ``rfd`` until told to stop; never returns."""
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if limits.nice:
        os.nice(limits.nice)
    if limits.memory_limit_mb:
        cap = limits.memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    # Jitter the recycling count so executors started together do not all
    # restart together.
    max_tasks = limits.max_tasks
    if max_tasks > 1:
        max_tasks = random.randint(max(1, max_tasks - max_tasks // 10), max_tasks)
    os.set_blocking(rfd, False)
    retry_on: dict[str, tuple[type[BaseException], ...] | None] = {}
    context.bind(wfd, limits.max_frame_bytes)
    tasks_run = 0
    while True:
        frame = next_frame(rfd, limits.max_frame_bytes)
        if frame is None or frame[0] == FrameType.STOP or _State.stop_requested:
            os._exit(0)
        ftype, desc = frame
        if ftype != FrameType.RUN:
            continue
        _State.in_task = True
        context.start(desc["id"])
        write_all(wfd, encode(FrameType.STARTED, {"id": desc["id"], "at": time.time()}))
        done = run_call(desc, registry, limits, retry_on)[0]
        context.start(None)
        tasks_run += 1
        rss = rss_mb()
        recycle = None
        if done["error"] is not None and done["error"]["reason"] in ("memory", "timeout"):
            recycle = done["error"]["reason"]  # the process state cannot be trusted now
        elif limits.max_memory_mb and rss > limits.max_memory_mb:
            recycle = "memory"
        elif max_tasks and tasks_run >= max_tasks:
            recycle = "recycled"
        done["rss_mb"] = round(rss, 1)
        done["recycle"] = recycle
        write_all(wfd, done_frame(done, limits.max_frame_bytes, limits.max_result_bytes))
        _State.in_task = False
        if recycle or _State.stop_requested:
            os._exit(0)
