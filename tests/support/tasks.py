"""Task kinds used by the integration tests (task module ``tests.support.tasks``).

Tasks that need to leave a trace write to the directory named by the
``OFFLOAD_TEST_DIR`` environment variable (each test server gets its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime as dt
import decimal
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from executor import Retry, TaskTimeout, progress, task


def _trace_dir() -> Path:
    path = Path(os.environ.get("OFFLOAD_TEST_DIR", "/tmp"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _append(name: str, line: str) -> None:
    with open(_trace_dir() / name, "a") as f:
        f.write(line + "\n")


@task(name="noop")
def noop() -> None:
    """Nothing."""


@task(name="echo")
def echo(*args: object, **kwargs: object) -> dict[str, object]:
    """Return what it was given."""
    return {"args": list(args), "kwargs": kwargs}


@task(name="async_echo")
async def async_echo(value: object) -> object:
    """An async task."""
    await asyncio.sleep(0)
    return value


@task(name="async_leave_behind", max_retries=0)
async def async_leave_behind(path: str) -> int:
    """Start a task it does not wait for (it records being cancelled in ``path``)
    and return the executor's pid."""
    async def left() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            with open(path, "a") as f:
                f.write("cancelled\n")
            raise

    asyncio.get_running_loop().create_task(left())
    await asyncio.sleep(0)
    return os.getpid()


@task(name="raise_value_error", max_retries=0)
def raise_value_error(message: str = "boom") -> None:
    """Raise."""
    raise ValueError(message)


@task(name="exit3", max_retries=0)
def exit3() -> None:
    """Leave the executor abruptly."""
    os._exit(3)


@task(name="exit3_leaving_child", max_retries=0)
def exit3_leaving_child(name: str) -> None:
    """Start a long ``sleep`` (its pid appended to the trace file ``name``),
    then leave the executor abruptly, as ``exit3`` does."""
    child = subprocess.Popen(["sleep", "300"])
    _append(name, str(child.pid))
    os._exit(3)


@task(name="segfault", max_retries=0)
def segfault() -> None:
    """Read address 0."""
    ctypes.string_at(0)


@task(name="sigkill_self", max_retries=0)
def sigkill_self() -> None:
    """As if the OOM killer took the executor."""
    os.kill(os.getpid(), signal.SIGKILL)


@task(name="poison_segfault", max_retries=2, retry_backoff_s=0.05)
def poison_segfault() -> None:
    """Crashes on every attempt."""
    _append("poison.log", str(time.time()))
    ctypes.string_at(0)


@task(name="sleep")
def sleep(seconds: float) -> float:
    """Sleep, then return the seconds."""
    time.sleep(seconds)
    return seconds


@task(name="record", max_retries=0)
def record(name: str, value: str, fail: bool = False) -> str:
    """Append ``value`` to the file ``name``; optionally fail afterwards."""
    _append(name, value)
    if fail:
        raise RuntimeError(f"failing on purpose after {value}")
    return value


@task(name="flaky", max_retries=5, retry_backoff_s=0.2, retry_backoff_max_s=10)
def flaky(name: str, succeed_on: int) -> int:
    """Fail until attempt ``succeed_on``; log each attempt's start time."""
    _append(name, str(time.time()))
    attempts = len((_trace_dir() / name).read_text().split())
    if attempts < succeed_on:
        raise ConnectionError(f"attempt {attempts} failed")
    return attempts


@task(name="ask_retry", max_retries=1)
def ask_retry(name: str, delay_s: object = 0.3) -> str:
    """Ask for one retry (after ``delay_s``, whatever it is), then succeed."""
    _append(name, str(time.time()))
    if len((_trace_dir() / name).read_text().split()) < 2:
        raise Retry(delay_s=delay_s)  # type: ignore[arg-type]  # tests pass bad ones too
    return "second time lucky"


@task(name="not_retried", max_retries=3, retry_on=(ConnectionError,))
def not_retried() -> None:
    """ValueError is not in retry_on: no retry."""
    raise ValueError("not worth retrying")


@task(name="soft_timeout", max_retries=0, timeout_s=0.3)
def soft_timeout(name: str) -> str:
    """Catch the soft limit and clean up."""
    try:
        time.sleep(30)
    except TaskTimeout:
        _append(name, "cleaned up")
        raise
    return "not reached"


@task(name="hard_timeout", max_retries=0, timeout_s=0.3)
def hard_timeout(name: str) -> None:
    """Ignore the soft limit, with a child process, stuck in signal.pause()."""
    child = subprocess.Popen(["sleep", "300"])
    _append(name, str(child.pid))
    while True:
        try:
            signal.pause()
        except TaskTimeout:
            continue


@task(name="big_result", max_retries=0)
def big_result(n: int) -> str:
    """Return ``n`` bytes of text."""
    return "x" * n


@task(name="alloc_mb", max_retries=0)
def alloc_mb(mb: int, keep: bool = False) -> int:
    """Allocate ``mb`` MiB (kept alive in the process with ``keep``)."""
    block = bytearray(mb * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    if keep:
        _KEEP.append(block)
    return os.getpid()


_KEEP: list[bytearray] = []


@task(name="pid")
def pid() -> int:
    """The executor's pid."""
    return os.getpid()


def _wait_for_gate(name: str, limit_s: float) -> None:
    """Block until the trace file ``name`` exists; TimeoutError after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not (_trace_dir() / name).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"nobody opened the gate {name!r}")
        time.sleep(0.01)


@task(name="gated_progress", max_retries=0)
def gated_progress(name: str, limit_s: float = 30.0) -> str:
    """Report progress 0.25, wait for the gate ``{name}.1``, report 0.5, wait
    for the gate ``{name}.2``, return: the test sees each value before it
    lets the task go on."""
    progress(0.25, "step 1 of 2")
    _wait_for_gate(f"{name}.1", limit_s)
    progress(0.5, "step 2 of 2")
    _wait_for_gate(f"{name}.2", limit_s)
    return "done"


@task(name="flaky_slow", max_retries=3, retry_backoff_s=1.0, retry_backoff_max_s=10)
def flaky_slow(name: str, succeed_on: int) -> int:
    """``flaky`` with a back-off long enough to see the task wait in ``retrying``."""
    return flaky(name, succeed_on)


@task(name="gate", max_retries=0)
def gate(name: str, value: str = "", limit_s: float = 30.0) -> str:
    """Block until the trace file ``name`` exists (the test opens the gate), then
    append ``value`` to ``gate.log`` if given. Gives up after ``limit_s``."""
    _wait_for_gate(name, limit_s)
    if value:
        _append("gate.log", value)
    return "opened"


@task(name="typed_values", max_retries=0)
def typed_values(seed: int) -> dict[str, object]:
    """Return values of every extension type of ``executor.wire.codec``, built here."""
    return {
        "naive": dt.datetime(2024, 2, 29, 12, 30, 15, 123456),
        "aware": dt.datetime(2024, 2, 29, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        "day": dt.date(2024, 2, 29),
        "uuid": uuid.UUID(int=seed),
        "amount": decimal.Decimal("12345678901234567890.0001"),
        "raw": bytes(range(8)),
        "nested": [{"when": dt.date(2000, 1, seed % 28 + 1)}, (1, 2)],
    }


@task(name="fail_first", max_retries=0)
def fail_first(name: str, value: object) -> object:
    """Fail on the first run (the trace file ``name`` does not exist yet), then
    return ``value``: a task that succeeds once re-run."""
    first = not (_trace_dir() / name).exists()
    _append(name, "run")
    if first:
        raise RuntimeError("the first run fails on purpose")
    return value

@task(name="gated", max_retries=3)
def gated(name: str, value: str, gate: str, wait_s: float = 60.0) -> str:
    """Append ``"<value> <host> start"`` to the trace file ``name``, wait until
    the file ``gate`` exists (at most ``wait_s``), append ``"... end"`` and
    return the host (``TEST_HOST`` in the environment: which server ran it)."""
    host = os.environ.get("TEST_HOST", "?")
    _append(name, f"{value} {host} start")
    deadline = time.monotonic() + wait_s
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    _append(name, f"{value} {host} end")
    return host


@task(name="record_host", max_retries=0)
def record_host(name: str, value: str) -> None:
    """Append ``"<value> <host>"`` to the trace file ``name``."""
    _append(name, f"{value} {os.environ.get('TEST_HOST', '?')}")



# -- async def tasks that share an executor (issue 17) -----------------------------------

_RUNNING = {"now": 0, "max": 0}  # per executor process: async tasks running at once


@task(name="async_wait", max_retries=0)
async def async_wait(seconds: float) -> dict[str, int]:
    """Wait ``seconds`` on the loop; return this executor's pid and the most
    tasks it saw running at once (counted by the tasks themselves)."""
    _RUNNING["now"] += 1
    _RUNNING["max"] = max(_RUNNING["max"], _RUNNING["now"])
    try:
        await asyncio.sleep(seconds)
    finally:
        _RUNNING["now"] -= 1
    return {"pid": os.getpid(), "max": _RUNNING["max"]}


@task(name="async_alone", max_retries=0, concurrency=1)
async def async_alone(seconds: float) -> dict[str, int]:
    """A one-at-a-time async kind: how many async tasks ran in this executor
    beside it (it counts with ``async_wait``'s counter)."""
    _RUNNING["now"] += 1
    seen = _RUNNING["now"]
    try:
        await asyncio.sleep(seconds)
        seen = max(seen, _RUNNING["now"])
    finally:
        _RUNNING["now"] -= 1
    return {"pid": os.getpid(), "beside": seen - 1}


async def _async_gate(name: str, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not (_trace_dir() / name).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"nobody opened the gate {name!r}")
        await asyncio.sleep(0.01)


@task(name="async_gate", max_retries=0)
async def async_gate(name: str, value: str = "", limit_s: float = 30.0) -> int:
    """Wait (on the loop) until the trace file ``name`` exists; append ``value``
    to ``async_started.log`` first if given. Returns the executor's pid."""
    if value:
        _append("async_started.log", value)
    await _async_gate(name, limit_s)
    return os.getpid()


@task(name="async_soft_timeout", max_retries=0, timeout_s=0.3)
async def async_soft_timeout(name: str) -> str:
    """Catch the soft limit where it waits, clean up, and re-raise."""
    _append("async_started.log", "soft")
    try:
        await asyncio.sleep(30)
    except TaskTimeout:
        _append(name, "cleaned up")
        raise
    return "not reached"


@task(name="async_hard_timeout", max_retries=0, timeout_s=0.3)
async def async_hard_timeout() -> None:
    """Ignore the soft limit, then block the loop: only the hard limit ends it."""
    _append("async_started.log", "hard")
    with contextlib.suppress(TaskTimeout):
        await asyncio.sleep(30)
    while True:
        time.sleep(1)


@task(name="async_segfault", max_retries=2, retry_backoff_s=0.05)
async def async_segfault(name: str) -> None:
    """Crash the executor on every attempt, once the test's gate opens
    (neighbours have started by then)."""
    _append(name, str(os.getpid()))
    await _async_gate(f"{name}.gate", 30)
    ctypes.string_at(0)



@task(name="slot_run", max_retries=0)
def slot_run(trace: str, scheduled_for: float, gate: str = "", limit_s: float = 30.0) -> float:
    """A scheduled run: appends ``start <slot> <task id>`` to ``trace``, waits
    for ``gate`` to open (if named), then appends ``end <slot> <task id>``."""
    from executor.worker.context import current_task_id

    _append(trace, f"start {scheduled_for!r} {current_task_id()}")
    if gate:
        _wait_for_gate(gate, limit_s)
    _append(trace, f"end {scheduled_for!r} {current_task_id()}")
    return scheduled_for
