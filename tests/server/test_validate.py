"""Request validation, record shaping and error mapping: pure functions, no I/O."""

from __future__ import annotations

import math
from typing import Any

import pytest

from executor.wire.codec import decode_call, encode_value
from executor.wire.errors import PoolError, PoolUnavailable
from server import records, validate
from server.errors import ApiError, from_pool_error, from_pool_unavailable

NOW = 1_700_000_000.0


def refused(fn: Any, *args: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        fn(*args)
    assert info.value.status == 422
    return info.value


def test_spec_defaults_and_options() -> None:
    assert validate.spec({"kind": "k"}, NOW).keys() == {"kind", "payload"}
    out = validate.spec({"kind": "k", "args": [1, "a", None], "kwargs": {"x": {"y": [True]}},
                         "max_retries": 0, "timeout_s": 0.5, "priority": -1000, "delay_s": 0,
                         "idempotency_key": "abc"}, NOW)
    assert decode_call(out.pop("payload")) == ([1, "a", None], {"x": {"y": [True]}})
    assert out == {"kind": "k", "max_retries": 0, "timeout_s": 0.5, "priority": -1000,
                   "not_before": NOW, "idempotency_key": "abc"}
    assert validate.spec({"kind": "k", "eta": 5}, NOW)["not_before"] == 5.0
    assert validate.spec({"kind": "k", "delay_s": 2.5}, NOW)["not_before"] == NOW + 2.5
    far = validate.spec({"kind": "k", "delay_s": validate.MAX_DELAY_S}, NOW)["not_before"]
    assert far == NOW + validate.MAX_DELAY_S  # ten years ahead is still fine


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "k", "max_retries": True}, "max_retries"),
    ({"kind": "k", "max_retries": 1.0}, "max_retries"),
    ({"kind": "k", "max_retries": -1}, "max_retries"),
    ({"kind": "k", "timeout_s": "5"}, "timeout_s"),
    ({"kind": "k", "timeout_s": -0.1}, "timeout_s"),
    ({"kind": "k", "timeout_s": math.inf}, "timeout_s"),
    ({"kind": "k", "timeout_s": 1e308}, "timeout_s"),
    ({"kind": "k", "timeout_s": validate.MAX_TIMEOUT_S + 1}, "timeout_s"),
    ({"kind": "k", "priority": -1001}, "priority"),
    ({"kind": "k", "delay_s": 1, "eta": 2}, "eta"),
    ({"kind": "k", "eta": -1}, "eta"),
    ({"kind": "k", "eta": 1e300}, "eta"),
    ({"kind": "k", "eta": NOW + validate.MAX_DELAY_S + 1}, "eta"),
    ({"kind": "k", "delay_s": validate.MAX_DELAY_S + 1}, "delay_s"),
    ({"kind": "k", "idempotency_key": ""}, "idempotency_key"),
    ({"kind": "k" * 201}, "kind"),
    ({"kind": 3}, "kind"),
    ({"kind": "k", "args": None}, "args"),
    ({"kind": "k", "args": [1, -(2**63) - 1]}, "args[1]"),
    ({"kind": "k", "kwargs": {"ok": 1, "big": 2**64}}, "kwargs.big"),
    ({"kind": "k", "Kind": "k"}, "Kind"),
    # The settings' floor (default_timeout_s >= 0.001), not just "> 0".
    ({"kind": "k", "timeout_s": 1e-9}, "timeout_s"),
    ({"kind": "k", "timeout_s": 0.0009}, "timeout_s"),
    # Lone surrogates (JSON "\ud800") parse but cannot be encoded or stored.
    ({"kind": "\ud800"}, "kind"),
    ({"kind": "send\udfff"}, "kind"),
    ({"kind": "k", "idempotency_key": "\ud800"}, "idempotency_key"),
    ({"kind": "k", "args": ["ok", "\ud800"]}, "args[1]"),
    ({"kind": "k", "args": [{"\ud800": 1}]}, "args[0]"),
    ({"kind": "k", "kwargs": {"a": ["\udc00"]}}, "kwargs.a"),
    ({"kind": "k", "kwargs": {"\ud800": 1}}, "kwargs"),
])
def test_spec_refusals_name_the_field(body: dict[str, Any], field: str) -> None:
    assert refused(validate.spec, body, NOW).field == field


def test_timeout_s_has_the_setting_s_bounds() -> None:
    assert validate.spec({"kind": "k", "timeout_s": 0.001}, NOW)["timeout_s"] == 0.001
    assert validate.spec({"kind": "k", "timeout_s": 604_800}, NOW)["timeout_s"] == 604_800
    message = refused(validate.spec, {"kind": "k", "timeout_s": 1e-9}, NOW).message
    assert ">= 0.001" in message


def test_surrogate_refusals_say_why() -> None:
    err = refused(validate.spec, {"kind": "\ud800"}, NOW)
    assert "lone surrogate" in err.message
    assert refused(validate.batch, {"tasks": [{"kind": "k"}, {"kind": "\ud800"}]},
                   NOW).field == "tasks[1].kind"
    assert refused(validate.batch, {"tasks": [{"kind": "k", "idempotency_key": "\udbff"}]},
                   NOW).field == "tasks[0].idempotency_key"
    assert refused(validate.list_args, {"kind": "\ud800"}).field == "kind"
    assert refused(validate.list_args, {"cursor": "\ud800"}).field == "cursor"
    # Valid non-ASCII text (a surrogate pair in JSON is one character) passes.
    assert validate.spec({"kind": "envoyer_\u00e9\U0001f600"}, NOW)["kind"] == (
        "envoyer_\u00e9\U0001f600")


def test_spec_prefix_applies_to_every_field() -> None:
    assert refused(validate.spec, {"kind": "k", "priority": "high"}, NOW, "tasks[9].").field == (
        "tasks[9].priority")
    assert refused(validate.spec, {"what": 1}, NOW, "tasks[0].").field == "tasks[0].what"


def test_batch() -> None:
    specs = validate.batch({"tasks": [{"kind": "a"}, {"kind": "b", "priority": 3}]}, NOW)
    assert [s["kind"] for s in specs] == ["a", "b"] and specs[1]["priority"] == 3
    assert refused(validate.batch, {"tasks": "a"}, NOW).field == "tasks"
    assert refused(validate.batch, {"tasks": [[]]}, NOW).field == "tasks[0]"


def test_too_deep() -> None:
    def nest(n: int) -> Any:
        value: Any = 1
        for _ in range(n):
            value = [value]
        return value
    ok = {"args": nest(31)}  # body (1) + 31 lists = 32 levels
    assert validate.too_deep(b"[" * 40, ok, keep=1) is None
    deep = {"kind": "k", "args": [1, {"a": nest(31)}]}  # 1 + 1 + 1 + 31 = 34
    assert validate.too_deep(b"[" * 40, deep, keep=1) == "args"
    assert validate.too_deep(b"[" * 40, {"tasks": [{}, deep]}, keep=3) == "tasks[1].args"
    # Few brackets in the raw body: no walk at all.
    assert validate.too_deep(b"{}", deep, keep=1) is None


def test_idempotency_key_header_bytes() -> None:
    assert validate.idempotency_key(b"k-1", "Idempotency-Key") == "k-1"
    assert refused(validate.idempotency_key, b"\xff", "Idempotency-Key").field == (
        "Idempotency-Key")


def test_wait_s() -> None:
    assert validate.wait_s({}, 60) is None
    assert validate.wait_s({"wait": "0"}, 60) == 0.0
    assert validate.wait_s({"wait": "60"}, 60) == 60.0
    for bad in ("60.5", "-0.1", "inf", "nan", "x", ""):
        assert refused(validate.wait_s, {"wait": bad}, 60).field == "wait"


def test_list_args() -> None:
    assert validate.list_args({}) == {"limit": 50}
    assert validate.list_args({"status": "retrying", "limit": "500", "cursor": ""}) == {
        "status": "retrying", "limit": 500}
    assert refused(validate.list_args, {"status": "PENDING"}).field == "status"
    assert refused(validate.list_args, {"kind": ""}).field == "kind"


def test_force() -> None:
    assert validate.force({}) is False
    assert validate.force({"force": "true"}) is True
    assert validate.force({"force": "0"}) is False
    assert refused(validate.force, {"force": "maybe"}).field == "force"


def test_record_json_and_retry_after() -> None:
    wire = {"id": "t1", "kind": "k", "status": "succeeded", "attempts": 1, "max_retries": 3,
            "timeout_s": 1.0, "priority": 0, "not_before": 0.0, "created_at": NOW,
            "started_at": NOW, "finished_at": NOW, "result": encode_value({"b": b"hi"}),
            "error": None, "progress": None, "cancelled_by": None, "group_id": "g", "seq": 0,
            "idempotency_key": None}
    out = records.to_json(wire)
    assert out["result"] == {"b": {"$bytes": "aGk="}} and "group_id" not in out
    assert records.retry_after_s(wire, NOW) is None
    assert records.retry_after_s({**wire, "status": "running"}, NOW) == 1
    assert records.retry_after_s({**wire, "status": "pending", "not_before": NOW - 5}, NOW) == 1
    assert records.retry_after_s({**wire, "status": "pending", "not_before": NOW + 9.2}, NOW) == 10
    assert records.to_json({**wire, "result": None})["result"] is None


@pytest.mark.parametrize(("code", "status"), [
    ("unknown_kind", 422), ("invalid", 422), ("not_found", 404), ("conflict", 409),
    ("frame_too_large", 413), ("internal", 500), ("unknown_op", 500)])
def test_pool_error_mapping(code: str, status: int) -> None:
    err = from_pool_error(PoolError(code, "msg", "tasks[0].kind"), "tasks[0].")
    assert err.status == status
    if status != 500:
        assert (err.code, err.message, err.field) == (code, "msg", "kind")
    else:
        assert err.message != "msg" and err.field is None


def test_a_store_that_cannot_write_is_a_503_to_retry() -> None:
    # The pool's words name the store's file: they stay in the server's log.
    err = from_pool_error(PoolError("store_unavailable", "/srv/app/var/offload.db: database "
                                    "or disk is full; nothing was changed"))
    assert (err.status, err.code, err.headers) == (503, "store_unavailable",
                                                    [(b"retry-after", b"1")])
    assert "offload.db" not in err.message and "/srv" not in err.message
    assert "retry shortly" in err.message and "Idempotency-Key" in err.message


def test_pool_unavailable_mapping() -> None:
    err = from_pool_unavailable(PoolUnavailable("cannot reach the pool at /secret/pool.sock"))
    assert err.status == 503 and err.headers == [(b"retry-after", b"1")]
    assert "/secret" not in err.message
    # No answer from the pool: the request may have reached it and been stored.
    assert "may or may not have been stored" in err.message
    assert "same Idempotency-Key" in err.message


def test_a_single_post_does_not_see_the_batch_prefix_in_the_message() -> None:
    err = from_pool_error(PoolError("invalid", "tasks[0].timeout_s must be a number > 0",
                                    "tasks[0].timeout_s"), "tasks[0].")
    assert (err.message, err.field) == ("timeout_s must be a number > 0", "timeout_s")
    batch = from_pool_error(PoolError("invalid", "tasks[2].seq must be an integer >= 0",
                                      "tasks[2].seq"))
    assert (batch.message, batch.field) == ("tasks[2].seq must be an integer >= 0", "tasks[2].seq")


def test_a_page_too_large_for_a_frame_is_a_422_asking_for_a_smaller_limit() -> None:
    err = from_pool_error(PoolError("frame_too_large", "this page of 50 records is ...",
                                    "limit"))
    assert (err.status, err.field) == (422, "limit")
    assert from_pool_error(PoolError("frame_too_large", "request too large")).status == 413
