"""What a running task can ask of its executor: ``progress()``.

The pipe is per executor process, bound by the runner after fork; the
running task's id is per task (a context variable: ``async def`` tasks run
several at once on the executor's event loop, each in its own context). In
any other process ``progress`` is a no-op, so task functions can be called
directly in tests.
"""

from __future__ import annotations

import contextvars
import math

from executor.wire.protocol import DEFAULT_MAX_FRAME_BYTES, FrameType, encode, write_all

MAX_PROGRESS_MESSAGE_CHARS = 500
_fd: int | None = None
_max_message_bytes = DEFAULT_MAX_FRAME_BYTES // 4
_task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("offload_task_id",
                                                                     default=None)


def bind(fd: int, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
    """Called once by the executor after fork: where progress frames go, and the
    frame limit the pool enforces on them (a larger frame gets the executor
    killed)."""
    global _fd, _max_message_bytes
    _fd = fd
    _max_message_bytes = max_frame_bytes // 4


def start(task_id: str | None) -> None:
    """Called by the executor when a task starts (``None`` when it ends), in
    the task's own context: an ``asyncio`` task's or the executor's."""
    _task_id.set(task_id)


def current_task_id() -> str | None:
    """The id of the task running in this context, or ``None``."""
    return _task_id.get()


def progress(value: float, message: str = "") -> None:
    """Report progress of the running task: ``value`` in [0, 1] and a short message
    (cut to its first ``MAX_PROGRESS_MESSAGE_CHARS`` characters).

    The task's record shows the latest value while it runs. Outside an
    executor this does nothing.
    """
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1):
        raise ValueError(f"progress value must be a number in [0, 1], got {value!r}")
    task_id = _task_id.get()
    if _fd is None or task_id is None:
        return
    text = str(message)[:MAX_PROGRESS_MESSAGE_CHARS]
    data = text.encode("utf-8", "backslashreplace")  # msgpack refuses lone surrogates
    if len(data) > _max_message_bytes or len(data) != len(text):
        # Non-ASCII (or a tiny max_frame_bytes): keep whole characters that fit.
        text = data[:_max_message_bytes].decode(errors="ignore")
    body = {"id": task_id, "value": float(value), "message": text}
    write_all(_fd, encode(FrameType.PROGRESS, body))
