"""Request and response helpers for the raw ASGI app: no framework (msgspec writes JSON).

``Request`` reads the few headers offload cares about in one pass over the
scope's header list. ``read_body`` enforces the body limit *before* and
*while* reading (``Content-Length`` first, then a running count, so a chunked
body is never buffered past ``max_body_bytes``). ``Response`` is a plain
``(status, headers, body)`` tuple sent with ``send_response``.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from server.errors import ApiError, Headers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Response = tuple[int, Headers, bytes]

JSON_TYPE = b"application/json"
_CT_JSON = (b"content-type", JSON_TYPE)
# msgspec writes compact JSON and non-finite floats as null, as the API promises.
_encode = msgspec.json.Encoder().encode


class ClientDisconnected(Exception):
    """The client went away before the request was answered; send nothing."""


class Request:
    """One HTTP request: the scope plus the headers offload reads.

    Header values are raw bytes (``None`` when absent); a repeated header
    keeps its last value.
    """

    __slots__ = ("authorization", "content_length", "content_type", "idempotency_key",
                 "method", "receive", "scope", "task_id")

    def __init__(self, scope: Scope, receive: Receive, method: str, task_id: str) -> None:
        self.scope = scope
        self.receive = receive
        self.method = method
        self.task_id = task_id
        self.authorization: bytes | None = None
        self.content_length: bytes | None = None
        self.content_type: bytes | None = None
        self.idempotency_key: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                self.authorization = value
            elif name == b"content-type":
                self.content_type = value
            elif name == b"content-length":
                self.content_length = value
            elif name == b"idempotency-key":
                self.idempotency_key = value

    def query(self) -> dict[str, str]:
        """The query string as a dict (percent-decoded). Raises ``ApiError`` 422
        naming a parameter given twice: which one was meant is anyone's guess."""
        qs: bytes = self.scope.get("query_string", b"")
        if not qs:
            return {}
        out: dict[str, str] = {}
        for name, value in parse_qsl(qs.decode("latin-1"), keep_blank_values=True):
            if name in out:
                raise ApiError(422, "invalid", f"query parameter {name!r} is given more than "
                               "once; give it once", name)
            out[name] = value
        return out


BODY_SWEEP_S = 1.0
"""How often ``BodyDeadlines`` looks for late request bodies."""


class BodyDeadlines:
    """When the request bodies being read must have arrived: a stalled or
    trickling upload is answered 408 (and its connection closed) instead of
    holding its bytes in memory.

    The deadline is ``http_timeout_s`` less two sweeps (at least a quarter of it)
    after reading began: gunicorn's asgi worker gives up on a single wait for
    body data after ``http_timeout_s`` with a bare 500, so this answers
    first; and unlike that wait it also bounds a body that trickles in.
    One sweep a second cancels the late readers: a registration is a dict
    insert and pop, cheaper than an ``asyncio.timeout`` per request.
    Belongs to one event loop at a time (a new loop starts afresh).
    """

    def __init__(self, http_timeout_s: float) -> None:
        self.timeout_s = max(http_timeout_s / 4, http_timeout_s - 2 * BODY_SWEEP_S)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due: dict[asyncio.Task[Any], float] = {}
        self._late: set[asyncio.Task[Any]] = set()
        self._sweep: asyncio.TimerHandle | None = None

    def enter(self, task: asyncio.Task[Any]) -> None:
        """``task`` starts reading a body."""
        loop = task.get_loop()
        if loop is not self._loop:
            self._loop, self._due, self._late, self._sweep = loop, {}, set(), None
        self._due[task] = loop.time() + self.timeout_s
        if self._sweep is None:
            self._sweep = loop.call_later(BODY_SWEEP_S, self._sweep_late)

    def leave(self, task: asyncio.Task[Any]) -> bool:
        """``task`` stopped reading; whether it was cancelled for being late
        (its cancellation is then withdrawn: the caller answers 408)."""
        self._due.pop(task, None)
        if task in self._late:
            self._late.discard(task)
            task.uncancel()
            return True
        return False

    def _sweep_late(self) -> None:
        self._sweep = None
        if not self._due:
            return  # none left: the next enter arms it again
        assert self._loop is not None  # set by the enter that armed the sweep
        now = self._loop.time()
        for task, due in list(self._due.items()):
            if now >= due and task not in self._late:
                self._late.add(task)
                task.cancel()
        self._sweep = self._loop.call_later(BODY_SWEEP_S, self._sweep_late)



async def read_body(req: Request, max_body_bytes: int, deadlines: BodyDeadlines) -> bytes:
    """Read the whole body; 413 as soon as it passes ``max_body_bytes``; 408
    if it has not all arrived by its deadline (``deadlines``).

    ``Content-Length`` is checked before anything is read; chunked bodies
    are counted as they arrive and reading stops at the first byte over the
    limit. Raises ``ClientDisconnected`` if the client goes away.
    """
    task = asyncio.current_task()
    assert task is not None
    deadlines.enter(task)
    try:
        return await _read_body(req, max_body_bytes)
    except asyncio.CancelledError:
        if not deadlines.leave(task):
            raise  # not ours: the worker is stopping
        raise ApiError(408, "request_timeout", f"the request body did not all arrive within "
                       f"{deadlines.timeout_s:g} s (set by http_timeout_s)", None,
                       [(b"connection", b"close")]) from None
    finally:
        deadlines.leave(task)  # a second leave is a no-op


async def _read_body(req: Request, max_body_bytes: int) -> bytes:
    if req.content_length is not None:
        try:
            declared = int(req.content_length)
        except ValueError:
            raise ApiError(400, "malformed_request", "Content-Length is not a number",
                           "Content-Length") from None
        if declared > max_body_bytes:
            raise _too_large(max_body_bytes)
    receive = req.receive
    first = b""
    chunks: list[bytes] | None = None
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnected
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > max_body_bytes:
                raise _too_large(max_body_bytes)
            if not first:
                first = chunk
            else:
                if chunks is None:
                    chunks = [first]
                chunks.append(chunk)
        if not message.get("more_body", False):
            return first if chunks is None else b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"request body is larger than {limit} bytes "
                    "(max_body_bytes); send fewer or smaller tasks", None)


async def read_json(req: Request, max_body_bytes: int, deadlines: BodyDeadlines) -> bytes:
    """The raw body of a request that says it is JSON (decoding is the caller's,
    into a schema: ``server.validate``).

    415 if ``Content-Type`` is present and is not ``application/json``;
    413 past the limit; 408 past the body deadline.
    """
    ctype = req.content_type
    if ctype is not None and ctype.split(b";", 1)[0].strip().lower() != JSON_TYPE:
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type must be application/json, not {ctype.decode('latin-1')!r}",
                       "Content-Type")
    return await read_body(req, max_body_bytes, deadlines)


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes. Non-finite floats (a task may return ``nan``) become ``null``;
    a string UTF-8 cannot encode (a lone surrogate) is written as its ``\\u`` escape."""
    try:
        return _encode(obj)
    except UnicodeEncodeError:
        return json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def json_response(status: int, obj: Any, headers: Headers | None = None) -> Response:
    """A JSON response; ``headers`` are extra headers (content headers are added)."""
    body = dumps(obj)
    out = [_CT_JSON, (b"content-length", b"%d" % len(body))]
    if headers:
        out.extend(headers)
    return status, out, body


def error_response(exc: ApiError) -> Response:
    """The JSON error response for ``exc``."""
    return json_response(exc.status, exc.body(), exc.headers)


async def send_response(send: Send, response: Response, head: bool = False) -> None:
    """Send ``response``; for ``HEAD`` the headers only."""
    status, headers, body = response
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
