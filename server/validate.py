"""Validation of what clients send: bodies become pool specs, query strings
become pool arguments. The shapes and bounds are ``server.schemas``; this
module decodes into them and adds what a schema cannot say (``delay_s`` or
``eta``, ``eta`` at most ten years ahead, arguments msgpack can carry).
Every refusal is an ``ApiError`` raised before anything reaches the pool:
400 for a body that is not a JSON object, else 422 naming the field (``kind``,
``tasks[3].delay_s``, ``wait``...).

Every string that goes on to msgpack and the store (``kind``,
``idempotency_key``, argument strings and keyword names, query values) must
be Unicode text that UTF-8 can encode: JSON's ``"\\ud800"`` (a lone
surrogate) parses (msgspec refuses it; the standard library's parse is used
then), but cannot be stored, so it is refused naming the field.

The pool spec (``executor.pool.ops`` ``submit``) is ``{"kind", "payload"}`` plus
the options given; ``delay_s``/``eta`` become ``not_before``.
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

import msgspec

from config.settings import MAX_TIMEOUT_S, MIN_TIMEOUT_S
from executor.wire.codec import encode_call
from server import schemas
from server.errors import ApiError, invalid
from server.explain import refusal
from server.schemas import (
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    MAX_BATCH,
    MAX_DELAY_S,
    MAX_KEY_CHARS,
    MAX_KIND_CHARS,
    MAX_RETRIES,
    BatchBody,
    RetryFilter,
    TaskBody,
)

__all__ = ["LIST_LIMIT_DEFAULT", "LIST_LIMIT_MAX", "MAX_BATCH", "MAX_DELAY_S", "MAX_DEPTH",
           "MAX_KEY_CHARS", "MAX_KIND_CHARS", "MAX_RETRIES", "MAX_TIMEOUT_S", "MIN_TIMEOUT_S",
           "batch", "batch_body", "encodable", "force", "idempotency_key",
           "list_args", "no_query", "retry_filter", "spec", "submit_body", "too_deep", "wait_s"]

MAX_DEPTH = 32  # JSON nesting levels in a body; the body object itself is level 1
_TRUE = {"yes": "true", "": "true", "no": "false"}  # spellings accepted before the schema
S = TypeVar("S", bound=msgspec.Struct)
_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t) for t in (TaskBody, BatchBody, RetryFilter)}


def _decode(raw: bytes, root: type[S]) -> S:
    """``raw`` decoded as ``root``: 400 if it is not a JSON object, else 422."""
    try:
        out: S = _DECODERS[root].decode(raw)
        return out
    except msgspec.ValidationError as exc:
        text = str(exc)
        if text.startswith("Expected `object`") and " - at `" not in text:
            raise ApiError(400, "malformed_json", "request body must be a JSON object") from None
        if text.startswith("Number out of range"):  # 1e400: it would arrive as inf
            raise ApiError(400, "malformed_json", "request body is not valid JSON: a number "
                           "is out of the range of a 64-bit float") from None
        data = _generic(raw)
        raise refusal(exc, root, data) from None
    except msgspec.DecodeError:
        pass  # below, outside this handler: the stdlib's word on it
    except RecursionError:
        raise ApiError(400, "malformed_json", "request body is nested too deeply") from None
    # msgspec refuses JSON that the standard library parses (a lone surrogate,
    # "\ud800"): parse it so, to refuse it naming the field; else say why not.
    return _convert(_stdlib_decode(raw), root)


def _stdlib_decode(raw: bytes) -> Any:
    """``raw`` parsed by the standard library (no NaN or Infinity, no number
    that is infinite as a float); 400 if that fails too."""
    try:
        return _STDLIB_JSON(raw.decode())  # JSON on the wire is UTF-8 (RFC 8259)
    except RecursionError:
        raise ApiError(400, "malformed_json", "request body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ApiError(400, "malformed_json", f"request body is not valid JSON: {exc}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: JSON allows it, but it would arrive as inf
        raise ValueError(f"{text} is out of the range of a 64-bit float")
    return value


_STDLIB_JSON = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float).decode


def _generic(raw: bytes) -> Any:
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None


def _convert(data: Any, root: type[S], prefix: str = "", *, query: bool = False) -> S:
    try:
        out: S = msgspec.convert(data, root, strict=not query)
        return out
    except msgspec.ValidationError as exc:
        raise refusal(exc, root, data, prefix=prefix, query=query) from None
    except UnicodeEncodeError:
        # msgspec matches field names as UTF-8: a name with a lone surrogate
        field = _bad_name_at(data, prefix)
        raise invalid(field, f"{field} has a field name that is not valid Unicode text: it "
                      "holds a lone surrogate (a \\ud800-\\udfff escape without its pair)"
                      ) from None


def _bad_name_at(data: Any, prefix: str) -> str:
    """Where a field name that UTF-8 cannot encode is: the body, or a batch item."""
    if isinstance(data, dict) and all(encodable(k) for k in data if isinstance(k, str)):
        items = data.get("tasks")
        for i, item in enumerate(items if isinstance(items, list) else ()):
            if isinstance(item, dict) and not all(encodable(k) for k in item
                                                  if isinstance(k, str)):
                return f"{prefix}tasks[{i}]"
    return prefix.rstrip(".") or "body"


def encodable(text: str) -> bool:
    """Whether ``text`` is valid Unicode that UTF-8 (msgpack, SQLite) can
    encode: no lone surrogate, which JSON's ``\\ud800`` escapes can make."""
    if text.isascii():
        return True  # the common case, without building bytes
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _not_text(field: str) -> ApiError:
    return invalid(field, f"{field} is not valid Unicode text: it holds a lone surrogate "
                   "(a \\ud800-\\udfff escape without its pair)")


def _payload(args: list[Any], kwargs: dict[str, Any], prefix: str) -> bytes:
    try:
        # Parsed JSON always decodes (str keys, plain values): no second decode.
        return encode_call(args, kwargs, check_decodes=False)
    except TypeError:
        pass
    # Only JSON values reach here, so the failure is an integer outside
    # msgpack's 64-bit range or a string with a lone surrogate: find which
    # argument it is, to name it.
    for key in kwargs:
        if not encodable(key):
            raise invalid(f"{prefix}kwargs", f"{prefix}kwargs has a keyword argument name that "
                          "is not valid Unicode text: it holds a lone surrogate (a "
                          "\\ud800-\\udfff escape without its pair)")
    for i, value in enumerate(args):
        try:
            encode_call([value], {})
        except TypeError as exc:
            raise invalid(f"{prefix}args[{i}]", str(exc)) from None
    for key, value in kwargs.items():
        try:
            encode_call([], {key: value})
        except TypeError as exc:
            raise invalid(f"{prefix}kwargs.{key}", str(exc)) from None
    raise invalid(f"{prefix}args", "the arguments cannot be encoded")


def _spec(body: TaskBody, now: float, prefix: str) -> dict[str, Any]:
    """The pool spec of a decoded body (the checks no schema states)."""
    if not encodable(body.kind):
        raise _not_text(prefix + "kind")
    out: dict[str, Any] = {"kind": body.kind, "payload": _payload(body.args, body.kwargs,
                                                                  prefix)}
    unset = msgspec.UNSET
    if body.max_retries is not unset:
        out["max_retries"] = body.max_retries
    if body.timeout_s is not unset:
        out["timeout_s"] = body.timeout_s
    if body.priority is not unset:
        out["priority"] = body.priority
    if body.delay_s is not unset:
        if body.eta is not unset:
            raise invalid(prefix + "eta", "give delay_s or eta, not both")
        out["not_before"] = now + body.delay_s
    elif body.eta is not unset:
        if body.eta > now + MAX_DELAY_S:
            raise invalid(prefix + "eta", f"{prefix}eta must be at most ten years from now, "
                          f"in seconds since the epoch, got {body.eta!r}")
        out["not_before"] = body.eta
    if body.idempotency_key is not unset:
        if not encodable(body.idempotency_key):
            raise _not_text(prefix + "idempotency_key")
        out["idempotency_key"] = body.idempotency_key
    return out


def _check_depth(raw: bytes, bodies: list[TaskBody], in_batch: bool) -> None:
    """422 naming the first argument nested deeper than ``MAX_DEPTH`` (the body
    object is level 1, so a batch item's arguments start two levels deeper)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return  # fewer brackets than the limit: nothing can be too deep
    items = [{"args": body.args, "kwargs": body.kwargs} for body in bodies]
    shape: Any = {"tasks": items} if in_batch else items[0]
    deep = too_deep(raw, shape, keep=3 if in_batch else 1)
    if deep is not None:
        raise invalid(deep, f"{deep} is nested deeper than {MAX_DEPTH} levels; "
                      "pass a flatter value or an id to look up")


def submit_body(raw: bytes, now: float) -> dict[str, Any]:
    """The pool spec of a ``POST /tasks`` body (raw JSON bytes)."""
    body = _decode(raw, TaskBody)
    _check_depth(raw, [body], False)
    return _spec(body, now, "")


def batch_body(raw: bytes, now: float) -> list[dict[str, Any]]:
    """The pool specs of a ``POST /tasks/batch`` body (raw JSON bytes)."""
    items = _decode(raw, BatchBody).tasks
    _check_depth(raw, items, True)
    return [_spec(item, now, f"tasks[{i}].") for i, item in enumerate(items)]


def retry_filter(raw: bytes) -> dict[str, Any]:
    """Pool ``retry_failed`` arguments from a ``POST /tasks/retry`` body (empty: {})."""
    body = _decode(raw or b"{}", RetryFilter)
    if body.kind is not msgspec.UNSET and not encodable(body.kind):
        raise _not_text("kind")
    return {name: getattr(body, name) for name in body.__struct_fields__
            if getattr(body, name) is not msgspec.UNSET}


def spec(body: dict[str, Any], now: float, prefix: str = "") -> dict[str, Any]:
    """The pool spec for one submit body already parsed. ``prefix`` starts every
    field name in errors (``"tasks[3]."`` for a batch item). Raises ``ApiError`` 422."""
    return _spec(_convert(body, TaskBody, prefix), now, prefix)


def batch(body: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """The pool specs of a parsed ``POST /tasks/batch`` body ``{"tasks": [...]}``."""
    items = _convert(body, BatchBody).tasks
    return [_spec(item, now, f"tasks[{i}].") for i, item in enumerate(items)]


def idempotency_key(value: Any, field: str) -> str:
    """A valid idempotency key (1..200 characters), or 422 naming ``field``."""
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise invalid(field, f"{field} must be UTF-8 text") from None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_KEY_CHARS:
        raise invalid(field, f"{field} must be 1 to {MAX_KEY_CHARS} characters")
    if not encodable(value):
        raise _not_text(field)
    return value


def too_deep(raw: bytes, body: Any, keep: int) -> str | None:
    """The field holding a value nested deeper than ``MAX_DEPTH``, or ``None``.

    ``raw`` is scanned first: fewer brackets than the limit means no walk.
    The path is cut to its first ``keep`` parts (``args``, ``tasks[3].args``).
    """
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return None
    path = _deep_path(body, 1)
    if path is None:
        return None
    text = ""
    for part in path[:keep]:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or None


def _deep_path(value: Any, depth: int) -> list[str | int] | None:
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    if depth > MAX_DEPTH:
        return []
    for key, child in items:
        sub = _deep_path(child, depth + 1)
        if sub is not None:
            return [key, *sub]
    return None


def wait_s(query: dict[str, str], long_poll_max_s: float) -> float | None:
    """``?wait=S`` of ``GET /tasks/{id}``: seconds in 0..long_poll_max_s, or ``None``."""
    query_type: Any = schemas.task_query(long_poll_max_s)  # made at run time: no static type
    wait = _convert(query, query_type, query=True).wait
    return None if wait is msgspec.UNSET else float(wait)


def list_args(query: dict[str, str]) -> dict[str, Any]:
    """Pool ``list`` arguments from ``?status=&kind=&limit=&cursor=``."""
    q = _convert(query, schemas.ListQuery, query=True)
    out: dict[str, Any] = {"limit": q.limit}
    if q.status is not msgspec.UNSET:
        out["status"] = q.status
    if q.kind is not msgspec.UNSET:
        if not encodable(q.kind):
            raise _not_text("kind")
        out["kind"] = q.kind
    if q.cursor:
        if not encodable(q.cursor):
            raise _not_text("cursor")
        out["cursor"] = q.cursor
    return out


def no_query(query: dict[str, str]) -> None:
    """422 naming the first query parameter, for a route that takes none."""
    _convert(query, schemas.NoQuery, query=True)


def force(query: dict[str, str]) -> bool:
    """``?force=true|false`` of ``DELETE /tasks/{id}`` (default false; also 1/0, yes/no)."""
    text = query.get("force")
    if text is not None:
        query = {**query, "force": _TRUE.get(text.lower(), text)}
    return _convert(query, schemas.CancelQuery, query=True).force
