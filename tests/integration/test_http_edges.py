"""What real gunicorn answers at the edges of HTTP: request heads that never
complete, requests its parser refuses, and odd-but-valid JSON.

- A connection whose request head does not all arrive within
  ``http_header_timeout_s`` is answered 408 and closed (one that sent
  nothing is closed without an answer).
- Requests gunicorn's parser refuses get offload's JSON error body.
- No JSON the parser accepts makes a 5xx: lone surrogates (``"\\ud800"``),
  huge numbers, deep nesting... are refused with a 4xx naming the field,
  before anything reaches the pool.
"""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.procs import Env, ServerHandle

HEAD_TIMEOUT_S = 3.0  # far above a busy host's scheduling delays, so only the tests' stalls hit it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = ServerHandle(Env(tmp_path_factory.mktemp("edges"),
                              http_header_timeout_s=HEAD_TIMEOUT_S))
    try:
        yield handle
    finally:
        handle.stop()


def _exchange(server: ServerHandle, data: bytes) -> bytes:
    """Send ``data`` and read until the server closes the connection.

    The 60 s socket timeout is the failure bound: a server that never closed
    would fail the test there, not hang it.
    """
    with socket.create_connection(("127.0.0.1", server.env.port), timeout=60) as sock:
        if data:
            sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def _error(reply: bytes) -> tuple[int, dict[str, Any], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"\r\ncontent-type: application/json\r\n" in head.lower() + b"\r\n", head
    return status, json.loads(body)["error"], head


# -- request heads that never complete -------------------------------------------------


def test_a_head_that_stops_arriving_gets_408_and_is_closed(server: ServerHandle) -> None:
    with socket.create_connection(("127.0.0.1", server.env.port), timeout=60) as sock:
        sock.sendall(b"GET /healthz HTT")
        # Meanwhile, other requests are served as usual.
        assert server.http("GET", "/healthz")[0] == 200
        out = b""
        while chunk := sock.recv(65536):  # b"" once the server has closed it
            out += chunk
    status, error, _ = _error(out)
    assert (status, error["code"]) == (408, "request_timeout")
    assert "http_header_timeout_s" in error["message"]


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(
        server: ServerHandle) -> None:
    assert _exchange(server, b"") == b""


def test_a_head_sent_in_pieces_in_time_is_served(server: ServerHandle) -> None:
    with socket.create_connection(("127.0.0.1", server.env.port), timeout=60) as sock:
        for piece in (b"GET /hea", b"lthz HTTP/1.1\r\nHost: t\r\n", b"Connection: close\r\n\r\n"):
            sock.sendall(piece)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 200"), out[:200]


# -- requests gunicorn's parser refuses ------------------------------------------------


@pytest.mark.parametrize(("request_bytes", "status", "code"), [
    (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    (b"POST /tasks HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n", 400, "bad_request"),
    (b"POST /tasks HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
     400, "bad_request"),
    (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n", 400, "bad_request"),
    (b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200))
     + b"\r\n", 431, "header_fields_too_large"),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "uri_too_long"),
], ids=["request-line", "content-length", "two-content-lengths", "control-char", "headers",
        "long-line"])
def test_requests_the_parser_refuses_get_a_json_error(server: ServerHandle, request_bytes: bytes,
                                                      status: int, code: str) -> None:
    got, error, head = _error(_exchange(server, request_bytes))
    assert (got, error["code"], error["field"]) == (status, code, None)
    assert error["message"]
    assert b"\r\nconnection: close" in head.lower()


# -- odd but valid JSON never makes a 5xx ----------------------------------------------


@pytest.mark.parametrize(("path", "body", "headers", "field"), [
    ("/tasks", '{"kind": "\\ud800"}', {}, "kind"),
    ("/tasks", '{"kind": "echo", "idempotency_key": "\\udfff"}', {}, "idempotency_key"),
    ("/tasks/batch", '{"tasks": [{"kind": "echo"}, {"kind": "\\ud800"}]}', {}, "tasks[1].kind"),
    ("/tasks/batch", '{"tasks": [{"kind": "echo", "idempotency_key": "a\\ud800"}]}', {},
     "tasks[0].idempotency_key"),
    ("/tasks", '{"kind": "echo", "args": ["\\ud800"]}', {}, "args[0]"),
    ("/tasks", '{"kind": "echo", "kwargs": {"\\ud800": 1}}', {}, "kwargs"),
    ("/tasks", '{"kind": "echo", "kwargs": {"a": {"b": "\\udc00"}}}', {}, "kwargs.a"),
    ("/tasks", '{"kind": "echo", "timeout_s": 1e-9}', {}, "timeout_s"),
    ("/tasks", '{"kind": "echo"}', {"Idempotency-Key": "\\ud800"}, "Idempotency-Key"),
], ids=["kind", "key", "batch-kind", "batch-key", "arg", "kwarg-name", "kwarg", "timeout",
        "header"])
def test_each_text_field_is_checked(server: ServerHandle, path: str, body: str,
                                    headers: dict[str, str], field: str) -> None:
    # The header travels as the bytes of the JSON escape's surrogate, UTF-8 style.
    raw_headers = {k: v.encode().decode("unicode_escape").encode("utf-8", "surrogatepass")
                   .decode("latin-1") for k, v in headers.items()}
    status, error, _ = server.http("POST", path, raw=body.encode(), headers=raw_headers)
    assert (status, error["error"]["field"]) == (422, field), error


def test_odd_query_values_are_not_a_5xx(server: ServerHandle) -> None:
    for query in ("kind=%ED%A0%80", "cursor=%ED%A0%80", "status=%00", "kind=%00",
                  "limit=99999999999999999999", "cursor=%FF%FF"):
        status, body, _ = server.http("GET", f"/tasks?{query}")
        assert status in (200, 422), (query, status, body)
    for path in ("/tasks/%ED%A0%80", "/tasks/%00", "/tasks/" + "a" * 3000):
        status, body, _ = server.http("GET", path)
        assert status == 404, (path, status, body)


_ODD_TEXT = ["", "a", "\ud800", "\udfff", "x\udbff", "\udc00y", "\x00", "\uffff", "\ufeff",
             "\U0001f600", "e\u0301", "\u202e", "\\", '"', "k" * 201, "\u00e9" * 300, "echo",
             "noop", "send_email"]
_ODD_NUMBERS: list[Any] = [0, -1, 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 1e308,
                           -1e308, 5e-324, -0.0, 1e-9, 0.001, 604_800, 604_801, 0.5, True,
                           False, None]
_FIELDS = ["kind", "args", "kwargs", "max_retries", "timeout_s", "delay_s", "eta", "priority",
           "idempotency_key"]


def _value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if roll < 0.35:
        return rng.choice(_ODD_TEXT)
    if roll < 0.65 or depth > 40:
        return rng.choice(_ODD_NUMBERS)
    if roll < 0.8:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if roll < 0.85:  # a deep chain
        value: Any = rng.choice(_ODD_TEXT)
        for _ in range(rng.randrange(20, 45)):
            value = [value] if rng.random() < 0.5 else {"k": value}
        return value
    return {rng.choice(_ODD_TEXT): _value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _body(rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "echo" if rng.random() < 0.7 else rng.choice(_ODD_TEXT)}
    # Mostly well-shaped, with odd values inside: so that many reach the pool.
    body["args"] = [_value(rng, 2) for _ in range(rng.randrange(3))]
    body["kwargs"] = {rng.choice(_ODD_TEXT): _value(rng, 2) for _ in range(rng.randrange(3))}
    for name in _FIELDS:
        if rng.random() < 0.08:
            body[name] = _value(rng, 1)
    if rng.random() < 0.05:
        body[rng.choice(_ODD_TEXT)] = _value(rng, 1)
    return body


def test_odd_but_valid_json_bodies_never_get_a_5xx(server: ServerHandle) -> None:
    rng = random.Random(14)  # fixed: the same bodies on every run
    answered: dict[int, int] = {}
    for n in range(400):
        if n % 5 == 4:
            path, body = "/tasks/batch", {"tasks": [_body(rng) for _ in range(rng.randrange(4))]}
        else:
            path, body = "/tasks", _body(rng)
        headers = {}
        if rng.random() < 0.2:
            key = rng.choice(_ODD_TEXT) or "k"
            headers["Idempotency-Key"] = key.encode("utf-8", "surrogatepass").decode("latin-1")
        raw = json.dumps(body).encode()  # a lone surrogate goes out as its \\u escape
        status, reply, _ = server.http("POST", path, raw=raw, headers=headers)
        assert status < 500, (raw[:300], status, reply)
        if status >= 400:
            assert reply["error"]["code"] and reply["error"]["message"], reply
        answered[status] = answered.get(status, 0) + 1
    print("answers by status:", answered)
    # Both kinds of answer happened: the bodies exercised the pool, not only validation.
    assert answered.get(202, 0) > 40 and answered.get(422, 0) > 40, answered
    assert "unexpected error serving" not in server.output()
