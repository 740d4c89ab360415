"""offload's gunicorn worker class: gunicorn's ``asgi`` worker, with two
changes to how its HTTP/1 connections treat requests that never reach the app.

``worker_class = "asgi"`` (the default setting) runs ``OffloadWorker``; the
setting's name stays gunicorn's. gunicorn 27's asgi worker parses requests
in ``gunicorn.asgi.protocol.ASGIProtocol``; ``HeadTimeoutProtocol`` extends it:

- **A request head must arrive within ``http_header_timeout_s``.** gunicorn
  bounds the wait for a kept-alive connection's next request (``keepalive``)
  but not for a new connection's first one: a client that sends ``GET
  /healthz HTT`` and nothing more held its connection (and a slot of
  ``worker_connections``) for ever. The timer starts when the connection
  opens and stops when the parser has the whole head; when it fires, a
  connection that sent part of a head gets a ``408`` and is closed, one that
  sent nothing is closed without an answer (a browser's spare connection).
- **Errors gunicorn answers itself are JSON**, like every other offload
  error: ``{"error": {"code", "message", "field": null}}``. These are the
  requests its parser refuses before any app sees them (a malformed request
  line or header, a bad ``Content-Length``, control characters in a header:
  ``400``; a request line over ``limit_request_line``: ``414``; more than
  ``limit_request_fields`` headers or one over ``limit_request_field_size``:
  ``431``; an unknown transfer coding: ``501``), and a ``500`` when an app
  fails before it answers. gunicorn writes them all through one method,
  ``_send_error_response``, which is overridden here: status, headers and
  ``Connection: close`` stay gunicorn's; only the body and its type change.

How the protocol is installed: ``ASGIWorker._serve`` builds each listener's
protocol with ``lambda: ASGIProtocol(self)``, a name it looks up in its
module, ``gunicorn.workers.gasgi``, when a connection arrives; gunicorn
offers no other seam (no protocol-class setting, no connection hook).
``OffloadWorker.init_process`` rebinds that name in the worker process it
runs in (never in the master), which serves one worker. The integration
tests (tests/integration/test_http_edges.py) drive both behaviours through
real gunicorn, so a gunicorn that moved the seam fails them.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

from gunicorn.asgi import protocol as gprotocol
from gunicorn.asgi.protocol import ASGIProtocol
from gunicorn.workers import gasgi

from config.settings import Settings, load_settings
from server.errors import ApiError
from server.http import dumps
from server.supervision import supervision

# HTTP status of an error gunicorn answers itself -> offload's error code.
ERROR_CODES = {
    400: "bad_request",
    408: "request_timeout",
    414: "uri_too_long",
    426: "upgrade_required",
    431: "header_fields_too_large",
    500: "internal",
    501: "not_implemented",
}


def error_body(status: int, message: str) -> bytes:
    """The JSON body offload answers for ``status`` with ``message``."""
    return dumps(ApiError(status, ERROR_CODES.get(status, "http_error"), message).body())


class HeadTimeoutProtocol(ASGIProtocol):
    """gunicorn's HTTP/1 protocol with a deadline on the first request head
    and JSON error bodies (see the module docstring). One per connection."""

    def __init__(self, worker: Any) -> None:
        super().__init__(worker)
        self._head_timeout_s: float | None = getattr(worker, "head_timeout_s", None)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False  # a byte of the head has arrived

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        # Only plain HTTP/1 (the callback parser is set): HTTP/2 and uWSGI
        # connections keep gunicorn's own handling.
        if self._callback_parser is not None and self._head_timeout_s and not self._closed:
            self._head_timer = self.worker.loop.call_later(self._head_timeout_s,
                                                           self._head_timed_out)

    def data_received(self, data: bytes) -> None:
        if self._head_timer is not None and data:
            self._head_started = True
        super().data_received(data)

    def _on_headers_complete(self) -> Any:
        self._cancel_head_timer()
        return super()._on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._closed or self._current_request is not None:
            return  # gone already, or the head completed in this very loop turn
        if self._head_started:
            self._send_error_response(
                408, f"the request line and headers did not all arrive within "
                f"{self._head_timeout_s:g} s of connecting (http_header_timeout_s)")
        self._close_transport()
        # Wake the connection's task (waiting for a head) so that it sees the
        # connection closed and ends now, as gunicorn's keep-alive timeout does.
        if self._request_ready is not None:
            self._request_ready.set()

    def _send_error_response(self, status: int, message: str,
                             extra_headers: Any = ()) -> None:
        """gunicorn's error answer, with offload's JSON body (see the module docstring)."""
        body = error_body(status, message)
        reason = reason_phrase(status)
        extra = "".join(f"{name}: {value}\r\n" for name, value in extra_headers)
        head = (f"HTTP/1.1 {status} {reason}\r\n"
                f"Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"{extra}"
                f"Connection: close\r\n"
                f"\r\n")
        self._safe_write(head.encode("latin-1") + body)


def reason_phrase(status: int) -> str:
    """The reason phrase gunicorn's own error answers use for ``status``."""
    table: dict[int, str] = getattr(gprotocol, "_REASON_PHRASES", {})
    reason = table.get(status)
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
    return reason


class OffloadWorker(gasgi.ASGIWorker):
    """gunicorn's asgi worker serving connections with ``HeadTimeoutProtocol``.

    ``head_timeout_s`` is the ``http_header_timeout_s`` setting, from the
    settings the master last loaded (as ``server.app.create_worker_app``
    builds the app from), or loaded now outside offload's gunicorn config.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings: Settings = supervision().settings or load_settings()
        self.head_timeout_s = settings.http_header_timeout_s

    def init_process(self) -> None:
        # The seam: ASGIWorker._serve looks this name up per connection (see
        # the module docstring). This runs in the worker process only.
        gasgi.ASGIProtocol = HeadTimeoutProtocol
        super().init_process()
