"""The executor package's exceptions. Errors that cross the socket carry a
wire form ``{"code", "message", "field"}``; ``PoolError`` is its Python side."""

from __future__ import annotations


class OffloadError(Exception):
    """Base of every error offload raises on purpose."""


class PoolError(OffloadError):
    """The pool refused a request. ``code`` is stable; ``message`` is for people.

    Codes: ``not_found``, ``conflict``, ``unknown_kind``, ``invalid``,
    ``frame_too_large``, ``malformed_frame``, ``unsupported_version``,
    ``unknown_op``, ``internal``.
    """

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def wire(self) -> dict[str, str | None]:
        """The error's wire form."""
        return {"code": self.code, "message": self.message, "field": self.field}


class PoolUnavailable(OffloadError):
    """The pool cannot be reached (not started, restarting, or gone)."""


class UnknownKind(OffloadError, LookupError):
    """No task is registered under this kind; the message lists close matches."""


class Retry(OffloadError):
    """Raise inside a task to ask for another attempt after ``delay_s`` seconds.

    Counts as an attempt; when attempts are exhausted the task ends ``failed``.
    """

    def __init__(self, delay_s: float | None = None, message: str = "retry requested") -> None:
        super().__init__(message)
        self.delay_s = delay_s


class TaskTimeout(OffloadError):
    """Raised inside a task when its soft time limit passes, so it can clean up."""
