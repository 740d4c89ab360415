"""Validation of what clients send: submit bodies become pool specs, query
strings become pool arguments. Every refusal is an ``ApiError`` 422 that names
the field (``kind``, ``tasks[3].delay_s``, ``wait``...), raised before anything
reaches the pool.

Submit body (``POST /tasks``, and each item of ``POST /tasks/batch``)::

    {"kind": str, "args": list = [], "kwargs": object = {},
     "max_retries": int 0..100, "timeout_s": number in [0.001, 604800],
     "delay_s": number >= 0  |  "eta": epoch seconds,
     "priority": int -1000..1000, "idempotency_key": str (1..200 chars)}

The bounds of ``max_retries`` and ``timeout_s`` are the settings' own
(``config.settings``). Every string that goes on to msgpack and the store
(``kind``, ``idempotency_key``, argument strings and keyword names, query
values) must be Unicode text that UTF-8 can encode: JSON's ``"\\ud800"``
(a lone surrogate) parses, but cannot be stored, so it is refused naming
the field.

The pool spec (``executor.pool.ops`` ``submit``) is ``{"kind", "payload"}`` plus
the options given; ``delay_s``/``eta`` become ``not_before``.
"""

from __future__ import annotations

import math
from typing import Any

from config.settings import MAX_RETRIES, MAX_TIMEOUT_S, MIN_TIMEOUT_S
from executor.pool.specs import PRIORITY_MAX, PRIORITY_MIN
from executor.store.base import STATUSES
from executor.wire.codec import encode_call
from server.errors import ApiError, invalid

SPEC_FIELDS = ("kind", "args", "kwargs", "max_retries", "timeout_s", "delay_s", "eta",
               "priority", "idempotency_key")
_SPEC_FIELDS = frozenset(SPEC_FIELDS)
MAX_DEPTH = 32  # JSON nesting levels in a body; the body object itself is level 1
MAX_BATCH = 1000
MAX_KEY_CHARS = 200
MAX_KIND_CHARS = 200
MAX_DELAY_S = 10 * 366 * 86400.0
"""How far ahead a task may be scheduled (``delay_s``, ``eta``): ten years.
Beyond that a typo (milliseconds for seconds) would park a task for ever."""
LIST_LIMIT_MAX = 500
LIST_LIMIT_DEFAULT = 50
_TRUE = frozenset({"true", "1", "yes", ""})
_FALSE = frozenset({"false", "0", "no"})


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


def _int(value: Any, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise invalid(field, f"{field} must be an integer from {lo} to {hi}, got {value!r}")
    return value


def _number(value: Any, field: str, *, minimum: float, exclusive: bool,
            maximum: float = math.inf, what: str = "") -> float:
    """``value`` as a float if it is a finite number above ``minimum`` (or at
    it, unless ``exclusive``) and at most ``maximum`` (``what`` names that
    bound in the message); else 422 naming ``field``."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and (value > minimum if exclusive else value >= minimum)
          and value <= maximum)
    if not ok:
        bound = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
        if maximum < math.inf:
            bound += f" and at most {maximum:.0f}" + (f" ({what})" if what else "")
        raise invalid(field, f"{field} must be a number {bound}, got {value!r}")
    return float(value)


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


def spec(body: dict[str, Any], now: float, prefix: str = "") -> dict[str, Any]:
    """The pool spec for one submit body. ``prefix`` starts every field name
    in errors (``"tasks[3]."`` for a batch item). Raises ``ApiError`` 422."""
    if not body.keys() <= _SPEC_FIELDS:
        unknown = next(k for k in body if k not in _SPEC_FIELDS)
        raise invalid(prefix + unknown,
                      f"unknown field {unknown!r}; accepted: {', '.join(SPEC_FIELDS)}")
    kind = body.get("kind")
    if not isinstance(kind, str) or not 0 < len(kind) <= MAX_KIND_CHARS:
        raise invalid(prefix + "kind", "kind must be the name of a registered task "
                      f"(a string of 1 to {MAX_KIND_CHARS} characters)")
    if not encodable(kind):
        raise _not_text(prefix + "kind")
    args = body.get("args", [])
    if not isinstance(args, list):
        raise invalid(prefix + "args", "args must be a JSON array")
    kwargs = body.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise invalid(prefix + "kwargs", "kwargs must be a JSON object")
    out: dict[str, Any] = {"kind": kind, "payload": _payload(args, kwargs, prefix)}
    if len(body) == 1 + ("args" in body) + ("kwargs" in body):
        return out  # the common case: no options
    if "max_retries" in body:
        out["max_retries"] = _int(body["max_retries"], prefix + "max_retries", 0, MAX_RETRIES)
    if "timeout_s" in body:
        out["timeout_s"] = _number(body["timeout_s"], prefix + "timeout_s",
                                   minimum=MIN_TIMEOUT_S, exclusive=False,
                                   maximum=MAX_TIMEOUT_S, what="a week")
    if "priority" in body:
        out["priority"] = _int(body["priority"], prefix + "priority", PRIORITY_MIN,
                               PRIORITY_MAX)
    if "delay_s" in body:
        if "eta" in body:
            raise invalid(prefix + "eta", "give delay_s or eta, not both")
        delay = _number(body["delay_s"], prefix + "delay_s", minimum=0, exclusive=False,
                        maximum=MAX_DELAY_S, what="ten years")
        out["not_before"] = now + delay
    elif "eta" in body:
        eta = _number(body["eta"], prefix + "eta", minimum=0, exclusive=False,
                      maximum=now + MAX_DELAY_S, what="ten years from now, in seconds since "
                      "the epoch")
        out["not_before"] = eta
    if "idempotency_key" in body:
        out["idempotency_key"] = idempotency_key(body["idempotency_key"],
                                                 prefix + "idempotency_key")
    return out


def batch(body: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """The pool specs of a ``POST /tasks/batch`` body ``{"tasks": [...]}`` (1..1000)."""
    if body.keys() != {"tasks"}:
        extra = next((k for k in body if k != "tasks"), None)
        if extra is not None:
            raise invalid(extra, f"unknown field {extra!r}; accepted: tasks")
        raise invalid("tasks", "tasks is required: a list of task bodies")
    items = body["tasks"]
    if not isinstance(items, list) or not 0 < len(items) <= MAX_BATCH:
        raise invalid("tasks", f"tasks must be a list of 1 to {MAX_BATCH} task bodies")
    specs = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise invalid(f"tasks[{i}]", f"tasks[{i}] must be a JSON object")
        specs.append(spec(item, now, f"tasks[{i}]."))
    return specs


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


def _allowed(query: dict[str, str], names: tuple[str, ...]) -> None:
    for name in query:
        if name not in names:
            raise invalid(name, f"unknown query parameter {name!r}; accepted: "
                          f"{', '.join(names) or 'none'}")


def wait_s(query: dict[str, str], long_poll_max_s: float) -> float | None:
    """``?wait=S`` of ``GET /tasks/{id}``: seconds in 0..long_poll_max_s, or ``None``."""
    _allowed(query, ("wait",))
    text = query.get("wait")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= long_poll_max_s:  # also refuses nan
        raise invalid("wait", f"wait must be a number of seconds from 0 to {long_poll_max_s:g}, "
                      f"got {text!r}")
    return value


def list_args(query: dict[str, str]) -> dict[str, Any]:
    """Pool ``list`` arguments from ``?status=&kind=&limit=&cursor=``."""
    _allowed(query, ("status", "kind", "limit", "cursor"))
    out: dict[str, Any] = {"limit": LIST_LIMIT_DEFAULT}
    status = query.get("status")
    if status is not None:
        if status not in STATUSES:
            raise invalid("status", f"status must be one of {', '.join(STATUSES)}, "
                          f"got {status!r}")
        out["status"] = status
    kind = query.get("kind")
    if kind is not None:
        if not 0 < len(kind) <= MAX_KIND_CHARS:
            raise invalid("kind", f"kind must be 1 to {MAX_KIND_CHARS} characters")
        if not encodable(kind):
            raise _not_text("kind")
        out["kind"] = kind
    limit = query.get("limit")
    if limit is not None:
        try:
            out["limit"] = _int(int(limit), "limit", 1, LIST_LIMIT_MAX)
        except ValueError:
            raise invalid("limit", f"limit must be an integer from 1 to {LIST_LIMIT_MAX}, "
                          f"got {limit!r}") from None
    cursor = query.get("cursor")
    if cursor:
        if not encodable(cursor):
            raise _not_text("cursor")
        out["cursor"] = cursor
    return out


def force(query: dict[str, str]) -> bool:
    """``?force=true|false`` of ``DELETE /tasks/{id}`` (default false)."""
    _allowed(query, ("force",))
    text = query.get("force")
    if text is None:
        return False
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise invalid("force", f"force must be true or false, got {text!r}")
