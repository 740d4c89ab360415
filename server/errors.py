"""The HTTP layer's one exception, and how pool errors become HTTP answers.

Every error the API returns has the body
``{"error": {"code": str, "message": str, "field": str | null}}``; ``ApiError``
carries exactly that plus the HTTP status and any extra headers.
"""

from __future__ import annotations

from executor.wire.errors import OffloadError, PoolError, PoolUnavailable

Headers = list[tuple[bytes, bytes]]

# PoolError code -> HTTP status. Anything not listed is the server's fault: 500.
_POOL_STATUS = {
    "unknown_kind": 422,
    "invalid": 422,
    "not_found": 404,
    "conflict": 409,
    "frame_too_large": 413,
    "store_unavailable": 503,  # disk full, I/O error: nothing stored, send again
}

# What HTTP clients are told instead of the pool's own words, for the
# refusals whose words describe the server (the store's file, SQLite's
# error; the pool logs them). The others are about the request.
_PUBLIC_MESSAGES = {
    "store_unavailable": "the task store could not write or sync the request's changes "
                         "(disk full or an I/O error; the server log says why); treat them as "
                         "not made and retry shortly, with the same Idempotency-Key when "
                         "submitting so that nothing is stored twice",
}
POOL_UNAVAILABLE_MESSAGE = (
    "the task pool did not answer (it cannot be reached, or it is restarting or "
    "overloaded). A submission may or may not have been stored: retry shortly with the same "
    "Idempotency-Key, which returns the task if it was stored and stores it if not")
"""The body of a ``503 pool_unavailable``: no answer came from the pool, so
whether a request that reached it took effect is unknown."""


class ApiError(OffloadError):
    """An error answer: ``status`` plus the JSON error body.

    ``field`` names the offending request field (``"kind"``,
    ``"tasks[3].args"``, ``"wait"``, ``"Idempotency-Key"``) or is ``None``.
    ``headers`` are added to the response (``Allow``, ``Retry-After``, ...).
    """

    __slots__ = ("code", "field", "headers", "message", "status")

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: Headers | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers

    def body(self) -> dict[str, dict[str, str | None]]:
        """The JSON error body."""
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


def invalid(field: str, message: str) -> ApiError:
    """A 422 naming ``field``."""
    return ApiError(422, "invalid", message, field)


def from_pool_error(exc: PoolError, field_prefix: str | None = None) -> ApiError:
    """Translate the pool's refusal into an HTTP error.

    ``field_prefix`` (e.g. ``"tasks[0]."``) is stripped from the pool's field
    name and from the start of its message, so a single ``POST /tasks``
    reports ``kind`` rather than ``tasks[0].kind``.
    """
    status = _POOL_STATUS.get(exc.code, 500)
    if exc.code == "frame_too_large" and exc.field == "limit":
        status = 422  # the pool's page, not the request, was too large: ask for fewer
    field, message = exc.field, exc.message
    if field is not None and field_prefix and field.startswith(field_prefix):
        field = field[len(field_prefix):]
        if message.startswith(field_prefix):
            message = message[len(field_prefix):]
    if status == 500:
        # The pool's internal message may describe its internals: keep it out.
        return ApiError(500, "internal", "the task pool failed to answer the request; "
                        "see the server log", None)
    message = _PUBLIC_MESSAGES.get(exc.code, message)
    retry = [(b"retry-after", b"1")] if status == 503 else None  # worth sending again soon
    return ApiError(status, exc.code, message, field, retry)


def from_pool_unavailable(exc: PoolUnavailable) -> ApiError:
    """503 with ``Retry-After: 1``: no answer from the pool (see
    ``POOL_UNAVAILABLE_MESSAGE``)."""
    # ``exc`` names the socket path: useful in the log, not to HTTP clients.
    del exc
    return ApiError(503, "pool_unavailable", POOL_UNAVAILABLE_MESSAGE, None,
                    [(b"retry-after", b"1")])
