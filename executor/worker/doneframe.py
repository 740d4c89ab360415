"""The ``DONE`` frame an executor sends after each task, within the frame limit.

The pool kills an executor whose frame is over ``max_frame_bytes`` (to the
pool that is a broken protocol), and the task would be retried, killing an
executor each time. So an error's message and traceback are cut to
``MAX_ERROR_MESSAGE_BYTES`` and ``MAX_TRACEBACK_BYTES`` (less with a small
``max_frame_bytes``), and a frame still too large (a result near the limit)
carries a non-retryable error in place of the result.
"""

from __future__ import annotations

from typing import Any

from executor.wire.protocol import HEADER_SIZE, FrameType, encode

MAX_ERROR_MESSAGE_BYTES = 8 * 1024  # an error's message, UTF-8, beyond which it is cut
MAX_TRACEBACK_BYTES = 64 * 1024  # an error's traceback, UTF-8 (head and tail kept)


def clip(text: str, max_bytes: int, keep_tail: bool) -> str:
    """``text`` in at most ``max_bytes`` of UTF-8: whole if it fits, else its
    head (and with ``keep_tail`` its tail, where a traceback names the line
    that raised) around a "... N bytes cut ..." marker. Characters UTF-8
    cannot carry (lone surrogates) become escapes: msgpack would refuse them."""
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= max_bytes:
        return data.decode()
    cut = len(data) - max_bytes + 40  # room for the marker
    if keep_tail:
        head = (max_bytes - 40) // 2
        tail = max_bytes - 40 - head
        return (data[:head].decode(errors="ignore") + f"\n... {cut} bytes cut ...\n"
                + data[len(data) - tail:].decode(errors="ignore"))
    return data[:max_bytes - 40].decode(errors="ignore") + f" ... ({cut} bytes cut)"


def done_frame(done: dict[str, Any], max_frame_bytes: int, max_result_bytes: int) -> bytes:
    """The ``DONE`` frame of ``done``, never over ``max_frame_bytes``:
    the error's texts are cut, and a result that still does not fit is
    replaced by a non-retryable error saying so (``done`` is updated)."""
    error = done["error"]
    if error is not None:
        # Bounded by the frame too, so a small max_frame_bytes (1 KiB) still fits.
        error["message"] = clip(str(error["message"]), min(
            MAX_ERROR_MESSAGE_BYTES, max_frame_bytes // 8), keep_tail=False)
        error["traceback"] = clip(str(error["traceback"]), min(
            MAX_TRACEBACK_BYTES, max_frame_bytes // 4), keep_tail=True)
    frame = encode(FrameType.DONE, done)
    size = len(frame) - HEADER_SIZE
    if size > max_frame_bytes:
        result_bytes = len(done["result"] or b"")
        done.update(ok=False, result=None, retry_delay_s=None, retryable=False, error={
            "reason": "error", "traceback": "",
            "message": f"result too large to send back: {result_bytes} bytes (a DONE frame of "
                       f"{size} bytes); max_frame_bytes is {max_frame_bytes}, and "
                       f"max_result_bytes ({max_result_bytes}) should be at most half "
                       f"of it; store large results elsewhere and return a reference"})
        frame = encode(FrameType.DONE, done)
    return frame
