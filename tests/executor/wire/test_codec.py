"""Argument encoding: everyday types round-trip; anything else is refused by name."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import uuid

import pytest

from executor.wire.codec import decode_call, decode_value, encode_call, encode_value, to_json_safe


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_everyday_types_round_trip() -> None:
    args = [None, True, 3, 2.5, "s", b"\x00\x01", [1, [2]], {"k": {"n": 1}},
            dt.datetime(2026, 11, 21, 14, 0, tzinfo=dt.UTC), dt.datetime(2020, 1, 1),
            dt.date(2026, 1, 2), uuid.UUID(int=7), decimal.Decimal("12.50")]
    got_args, got_kwargs = decode_call(encode_call(args, {"when": dt.date(2000, 1, 1)}))
    assert got_args == args
    assert got_kwargs == {"when": dt.date(2000, 1, 1)}


def test_tuples_become_lists_and_dataclasses_dicts() -> None:
    got, _ = decode_call(encode_call([(1, 2), Point(1, 2)], {}))
    assert got == [[1, 2], {"x": 1, "y": 2}]


def test_unencodable_argument_is_named() -> None:
    with pytest.raises(TypeError, match=r"argument .user. cannot be sent.*builtins.object"):
        encode_call([object()], {}, names=["user"])
    with pytest.raises(TypeError, match="argument 'args\\[1\\]'"):
        encode_call([1, {1, 2}], {})
    with pytest.raises(TypeError, match="argument 'callback'"):
        encode_call([], {"callback": print})
    with pytest.raises(TypeError, match="'big' is an integer outside the 64-bit range"):
        encode_call([], {"big": 2**70})


def test_a_dict_key_that_would_not_decode_is_refused_at_encoding() -> None:
    # A tuple key packs (as an array) but cannot be a key again once decoded.
    with pytest.raises(TypeError, match=r"argument 'totals' cannot be sent to an executor: it "
                                        r"would not decode there"):
        encode_call([{(1, 2): "pair"}], {}, names=["totals"])
    with pytest.raises(TypeError, match=r"argument 'nested' cannot be sent"):
        encode_call([], {"nested": [{"ok": {(1,): 1}}]})
    with pytest.raises(TypeError, match=r"the task's result cannot be sent back from the "
                                        r"executor.*Return a plain value"):
        encode_value({(1, 2): "pair"})
    # Scalar keys other than str round-trip.
    keys = {1: "int", 2.5: "float", None: "none", b"k": "bytes"}
    assert decode_call(encode_call([keys], {})) == ([keys], {})


def test_non_str_keyword_names_are_refused() -> None:
    with pytest.raises(TypeError, match="keyword argument names must be str"):
        encode_call([], {1: "x"})  # type: ignore[dict-item]


def test_values_and_json_view() -> None:
    value = {"at": dt.datetime(2026, 1, 1), "id": uuid.UUID(int=1), "raw": b"hi",
             "amount": decimal.Decimal("1.10")}
    assert decode_value(encode_value(value)) == value
    assert to_json_safe(value) == {"at": "2026-01-01T00:00:00",
                                   "id": "00000000-0000-0000-0000-000000000001",
                                   "raw": {"$bytes": "aGk="}, "amount": "1.10"}
