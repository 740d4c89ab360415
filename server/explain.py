"""msgspec's validation errors as the API's refusals: a 422 naming the field.

msgspec says *where* (``- at `$.tasks[3].priority```) and *what it expected*;
this turns that into ``ApiError(422, "invalid", message, field)`` whose
message is written from the schema (``server.schemas``) and the value sent:
"tasks[3].priority must be an integer from -1000 to 1000, got 'high'". Only
refusals come here, so this path may take its time.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import msgspec.inspect as mi

from server.errors import ApiError, invalid

_AT = " - at `"
_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_UNKNOWN = re.compile(r"Object contains unknown field `(.*)`")
_MISSING = re.compile(r"Object missing required field `(.*)`")
_NO_VALUE = object()

Part = str | int


def refusal(exc: msgspec.ValidationError, root: type, data: Any = _NO_VALUE, *,
            prefix: str = "", query: bool = False) -> ApiError:
    """The 422 for ``exc``, raised while decoding ``data`` as ``root``.

    ``data`` (the request as plain JSON values, when the caller has it) gives
    the value quoted in the message; ``prefix`` starts the field name; with
    ``query`` an unknown field is called a query parameter.
    """
    text = str(exc)
    what, sep, where = text.rpartition(_AT)
    if not sep:
        what, where = text, "$`"
    parts = _parts(where[1:-1])  # "$.tasks[3].kind`" -> ["tasks", 3, "kind"]
    unknown = _UNKNOWN.fullmatch(what)
    if unknown is not None:
        name = unknown.group(1)
        field = prefix + _name([*parts, name])
        accepted = ", ".join(f.name for f in _fields(_type_at(root, parts)))
        kind = "query parameter" if query else "field"
        return invalid(field, f"unknown {kind} {name!r}; accepted: {accepted or 'none'}")
    missing = _MISSING.fullmatch(what)
    if missing is not None:
        parts = [*parts, missing.group(1)]
        field = prefix + _name(parts)
        return invalid(field, f"{field} is required: {describe(_type_at(root, parts))}")
    field = prefix + _name(parts)
    message = f"{field} must be {describe(_type_at(root, parts))}"
    about = _description(root, parts)
    if about:
        message += f" ({about})"
    value = _value_at(data, parts)
    if value is not _NO_VALUE:
        message += f", got {value!r}"
    return invalid(field or "body", message)


def _parts(path: str) -> list[Part]:
    return [name if index is None or index == "" else int(index)
            for name, index in _PART.findall(path.removeprefix("$"))]


def _name(parts: list[Part]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _value_at(data: Any, parts: list[Part]) -> Any:
    value = data
    for part in parts:
        found = ((isinstance(part, int) and isinstance(value, list) and part < len(value))
                 or (isinstance(part, str) and isinstance(value, dict) and part in value))
        if found:
            value = value[part]
        else:
            return _NO_VALUE
    return value


def _unwrap(t: mi.Type) -> mi.Type:
    while True:
        if isinstance(t, mi.Metadata):
            t = t.type
        elif isinstance(t, mi.UnionType):
            # ``X | None``: describe X (``X | UNSET`` shows as X already)
            real = [m for m in t.types if not isinstance(m, mi.NoneType)]
            if len(real) != 1:
                return t
            t = real[0]
        else:
            return t


def _fields(t: mi.Type) -> tuple[mi.Field, ...]:
    return t.fields if isinstance(t, mi.StructType) else ()


def _type_at(root: type, parts: list[Part]) -> mi.Type:
    t = _unwrap(mi.type_info(root))
    for part in parts:
        if isinstance(t, mi.StructType) and isinstance(part, str):
            t = _unwrap(next((f.type for f in t.fields if f.name == part), mi.AnyType()))
        elif isinstance(t, mi.ListType) and isinstance(part, int):
            t = _unwrap(t.item_type)
        else:
            return mi.AnyType()
    return t


def _description(root: type, parts: list[Part]) -> str | None:
    """The schema's description of the field at ``parts``, if it has one."""
    if not parts or not isinstance(parts[-1], str):
        return None
    parent = _type_at(root, parts[:-1])
    t = next((f.type for f in _fields(parent) if f.name == parts[-1]), None)
    while isinstance(t, mi.UnionType):
        t = next((m for m in t.types if isinstance(m, mi.Metadata)), None)
    if isinstance(t, mi.Metadata) and t.extra_json_schema:
        about = t.extra_json_schema.get("description")
        return str(about) if about else None
    return None


def _range(lo: float | None, hi: float | None, lo_open: bool = False,
           words: bool = True) -> str:
    if lo is not None and hi is not None and not lo_open and words:
        return f" from {lo:g} to {hi:g}"
    out = [f"> {lo:g}" if lo_open else f">= {lo:g}"] if lo is not None else []
    if hi is not None:
        out.append(f"at most {hi:g}")
    return " " + " and ".join(out) if out else ""


def describe(t: mi.Type) -> str:
    """What a value of ``t`` must be, in words ("an integer from 0 to 100")."""
    t = _unwrap(t)
    if isinstance(t, mi.IntType):
        return "an integer" + _range(t.ge, t.le)
    if isinstance(t, mi.FloatType):
        lo_open = t.gt is not None
        return "a number" + _range(t.gt if lo_open else t.ge, t.le, lo_open, words=False)
    if isinstance(t, mi.StrType):
        if t.min_length is not None and t.max_length is not None:
            return f"a string of {t.min_length} to {t.max_length} characters"
        return "a string"
    if isinstance(t, mi.BoolType):
        return "true or false"
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(str(v) for v in t.values)
    if isinstance(t, mi.ListType):
        if t.min_length is not None and t.max_length is not None:
            return f"a JSON array of {t.min_length} to {t.max_length} items"
        return "a JSON array"
    if isinstance(t, (mi.DictType, mi.StructType)):
        return "a JSON object"
    return "a JSON value"
