"""Decoding raw bodies into the schemas: the fast path (msgspec) and the
standard library's parse it falls back to, and their answers."""

from __future__ import annotations

import pytest

from server import validate
from server.errors import ApiError
from server.http import dumps

NOW = 1_700_000_000.0


def refused(raw: bytes, batch: bool = False) -> ApiError:
    with pytest.raises(ApiError) as info:
        (validate.batch_body if batch else validate.submit_body)(raw, NOW)
    return info.value


def test_the_fast_path_gives_the_spec() -> None:
    spec = validate.submit_body(b'{"kind": "k", "args": [1], "priority": 3, "eta": 5}', NOW)
    assert (spec["kind"], spec["priority"], spec["not_before"]) == ("k", 3, 5.0)
    specs = validate.batch_body(b'{"tasks": [{"kind": "a"}, {"kind": "b", "delay_s": 1}]}', NOW)
    assert [s["kind"] for s in specs] == ["a", "b"] and specs[1]["not_before"] == NOW + 1


@pytest.mark.parametrize(("raw", "batch", "field"), [
    (b'{"kind": "\\ud800"}', False, "kind"),
    (b'{"kind": "k", "args": ["ok", "\\udc00"]}', False, "args[1]"),
    (b'{"kind": "k", "\\udfff": 1}', False, "body"),
    (b'{"tasks": [{"kind": "k"}, {"kind": "k", "\\udfff": 1}]}', True, "tasks[1]"),
    (b'{"tasks": [{"kind": "k", "idempotency_key": "a\\udbff"}]}', True,
     "tasks[0].idempotency_key"),
])
def test_lone_surrogates_msgspec_refuses_are_422_naming_the_field(
        raw: bytes, batch: bool, field: str) -> None:
    err = refused(raw, batch)
    assert (err.status, err.field) == (422, field)
    assert "surrogate" in err.message or "cannot be encoded" in err.message
    dumps(err.body())  # the answer itself can be written


@pytest.mark.parametrize("raw", [b"{", b"[1]", b'{"kind": NaN}', b'{"kind": "k", "args": [1e400]}',
                                 b"\xff", b""])
def test_what_is_not_a_json_object_is_400(raw: bytes) -> None:
    err = refused(raw)
    assert (err.status, err.code) == (400, "malformed_json")


def test_dumps_writes_what_utf8_cannot_as_escapes() -> None:
    assert dumps({"a": "\udc00", "n": float("nan")}) == b'{"a":"\\udc00","n":null}'
    assert dumps({"a": "é", "n": float("inf")}) == '{"a":"é","n":null}'.encode()
