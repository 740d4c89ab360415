"""What an executor enforces on itself: its set-up after fork, and when it leaves.

The pool sends ``Limits`` with ``SPAWN``; the template hands them to each
executor it forks. ``setup_process`` applies them once, after fork: the soft
time limit's signal (SIGALRM raises ``TaskTimeout`` in a ``def`` task; the
hard limit is enforced from outside, by the pool killing the executor's
process group), a lower CPU priority, and the address-space cap
(``memory_limit_mb``: a runaway allocation raises ``MemoryError`` in the
task, which then fails ``memory``). After each task ``recycle_reason`` says
whether the executor should leave once its running tasks end (memory over
``max_memory_mb``, ``max_tasks`` run, or a state it cannot trust).
"""

from __future__ import annotations

import os
import random
import resource
import signal
from dataclasses import dataclass
from types import FrameType as PyFrame
from typing import Any

from executor.wire.errors import TaskTimeout

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
    async_concurrency: int = 100  # async def tasks at once, unless set per kind


def setup_process(limits: Limits) -> None:
    """What an executor sets up once, after fork: signals, priority, the
    address-space cap."""
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if limits.nice:
        os.nice(limits.nice)
    if limits.memory_limit_mb:
        cap = limits.memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _on_alarm(signum: int, frame: PyFrame | None) -> None:
    raise TaskTimeout("soft time limit exceeded")


def recycle_reason(done: dict[str, Any], rss: float, limits: Limits, tasks_run: int,
                   max_tasks: int, asynchronous: bool) -> str | None:
    """Why the executor should leave once its running tasks end, if it should:
    ``memory``/``timeout`` after a ``def`` task's memory error or soft
    timeout (a signal or a failed allocation interrupted the process: its
    state cannot be trusted; an ``async def`` task's soft timeout is a clean
    cancellation), ``memory`` over ``max_memory_mb``, ``recycled`` after
    ``max_tasks`` tasks."""
    reason = done["error"]["reason"] if done["error"] is not None else None
    if reason == "memory" or (reason == "timeout" and not asynchronous):
        return str(reason)
    if limits.max_memory_mb and rss > limits.max_memory_mb:
        return "memory"
    if max_tasks and tasks_run >= max_tasks:
        return "recycled"
    return None


def jittered(max_tasks: int) -> int:
    """The recycling count, jittered so executors started together do not all
    restart together."""
    if max_tasks > 1:
        return random.randint(max(1, max_tasks - max_tasks // 10), max_tasks)
    return max_tasks


def rss_mb() -> float:
    """Resident memory of this process in MiB (from /proc). Read after every
    task, so the file stays open: one ``pread`` (2 us) instead of an open,
    read and close (30 us)."""
    pid = os.getpid()
    if _State.statm_pid != pid:  # /proc/self is resolved at open: not a parent's
        _State.statm_fd, _State.statm_pid = os.open("/proc/self/statm", os.O_RDONLY), pid
    return int(os.pread(_State.statm_fd, 128, 0).split()[1]) * _PAGE_MB


class _State:
    statm_fd = -1
    statm_pid = 0
