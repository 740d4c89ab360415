"""Encoding of task arguments and results: msgpack plus everyday Python types.

Accepted: ``None``, ``bool``, ``int`` (64-bit), ``float``, ``str``, ``bytes``,
lists and tuples (decoded as lists), dicts with scalar keys (``str``,
``int``, ``float``, ``bool``, ``None``, ``bytes``), and these
extension types, which round-trip exactly:

=========  ========  ============================================
type       ext code  body
=========  ========  ============================================
datetime   1         ISO 8601 text (naive stays naive)
date       2         ISO 8601 text
UUID       3         16 raw bytes
Decimal    4         its ``str()``
=========  ========  ============================================

Dataclass instances are encoded as dicts of their fields (one way: the task
receives a dict). Anything else is refused with ``TypeError`` naming the
argument, at the moment the task is added, never later in the executor:
every payload is decoded once as the executor will decode it (a tuple used
as a dict key packs, but comes back as an unhashable list).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack

EXT_DATETIME = 1
EXT_DATE = 2
EXT_UUID = 3
EXT_DECIMAL = 4

ACCEPTED = (
    "None, bool, int, float, str, bytes, list, tuple, dict with str, int, float, bool, "
    "None or bytes keys, "
    "datetime, date, UUID, Decimal, dataclass instances"
)


class _Unencodable(TypeError):
    def __init__(self, value: object) -> None:
        super().__init__(type(value).__name__)
        self.value = value


def _default(obj: object) -> Any:
    # datetime is a subclass of date: test it first.
    if isinstance(obj, dt.datetime):
        return msgpack.ExtType(EXT_DATETIME, obj.isoformat().encode())
    if isinstance(obj, dt.date):
        return msgpack.ExtType(EXT_DATE, obj.isoformat().encode())
    if isinstance(obj, uuid.UUID):
        return msgpack.ExtType(EXT_UUID, obj.bytes)
    if isinstance(obj, decimal.Decimal):
        return msgpack.ExtType(EXT_DECIMAL, str(obj).encode())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    raise _Unencodable(obj)


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_DATETIME:
        return dt.datetime.fromisoformat(data.decode())
    if code == EXT_DATE:
        return dt.date.fromisoformat(data.decode())
    if code == EXT_UUID:
        return uuid.UUID(bytes=data)
    if code == EXT_DECIMAL:
        return decimal.Decimal(data.decode())
    return msgpack.ExtType(code, data)


def _pack(value: object, what: str, to: str = "sent to an executor",
          instead: str = "Pass an id or a plain dict instead.") -> bytes:
    """Pack ``value`` as the other side will decode it, or raise ``TypeError``.

    ``what`` names the value in the message (``"argument 'user'"``), ``to``
    says where it goes, ``instead`` what to do.
    """
    try:
        data = msgpack.packb(value, default=_default, use_bin_type=True, strict_types=False)
    except _Unencodable as exc:
        if isinstance(exc.value, int):
            raise TypeError(
                f"{what} is an integer outside the 64-bit range msgpack carries; "
                f"pass it as a str or a Decimal"
            ) from None
        raise TypeError(
            f"{what} cannot be {to}: a value of type "
            f"{type(exc.value).__module__}.{type(exc.value).__qualname__} is not encodable; "
            f"accepted: {ACCEPTED}. {instead}"
        ) from None
    except (OverflowError, ValueError) as exc:
        raise TypeError(f"{what} cannot be encoded: {exc}") from None
    if not _decodes(data):
        raise TypeError(f"{what} cannot be {to}: it would not decode there (a dict key "
                        f"that is a tuple or another container?); accepted: {ACCEPTED}. "
                        f"{instead}")
    return data


def _decodes(data: bytes) -> bool:
    """Whether ``data`` decodes as the receiving side decodes it."""
    try:
        decode_value(data)
    except (TypeError, ValueError):
        return False
    return True


def encode_call(
    args: Sequence[Any], kwargs: Mapping[str, Any], names: Sequence[str] | None = None,
    *, check_decodes: bool = True,
) -> bytes:
    """Encode ``(args, kwargs)`` into one msgpack payload.

    ``names`` gives the parameter names of the positional arguments (for
    the error message); without it they are called ``args[i]``. Raises
    ``TypeError`` naming the first argument that cannot be encoded, or one
    that would not decode in the executor (a tuple as a dict key); pass
    ``check_decodes=False`` for values that always decode (parsed JSON),
    to skip decoding the payload once more.
    """
    for key in kwargs:
        if not isinstance(key, str):
            raise TypeError(f"keyword argument names must be str, got {key!r}")
    try:
        # The common case packs and decodes once; only a failure is worth a second look.
        data = msgpack.packb([list(args), dict(kwargs)], default=_default, use_bin_type=True)
        if not check_decodes or _decodes(data):
            return data
    except (TypeError, OverflowError, ValueError):
        pass
    for i, value in enumerate(args):
        name = names[i] if names is not None and i < len(names) else f"args[{i}]"
        _pack(value, f"argument {name!r}")
    for key, value in kwargs.items():
        _pack(value, f"argument {key!r}")
    return _pack([list(args), dict(kwargs)], "the arguments")


def decode_call(payload: bytes) -> tuple[list[Any], dict[str, Any]]:
    """Decode a payload made by ``encode_call``."""
    args, kwargs = msgpack.unpackb(payload, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    return args, kwargs


def encode_value(value: object, what: str = "the task's result") -> bytes:
    """Encode one value (a task's result). Raises ``TypeError`` naming it ``what``."""
    return _pack(value, what, "sent back from the executor", "Return a plain value instead.")


def decode_value(payload: bytes) -> Any:
    """Decode a value made by ``encode_value``."""
    return msgpack.unpackb(payload, ext_hook=_ext_hook, raw=False, strict_map_key=False)


def to_json_safe(value: Any) -> Any:
    """Convert a decoded value into JSON-compatible types (for the HTTP API)."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, bytes):
        import base64

        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    return value
