"""A request body that stops arriving is answered 408 before ``http_timeout_s``
(when gunicorn's own wait for body data would give up with a bare 500), its
connection closed; other requests are served meanwhile."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import Env, ServerHandle


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerHandle]:
    handle = ServerHandle(Env(tmp_path, http_timeout_s=5.0))
    try:
        yield handle
    finally:
        handle.stop()


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def test_a_stalled_body_gets_408_and_the_connection_is_closed(server: ServerHandle) -> None:
    with socket.create_connection(("127.0.0.1", server.env.port), timeout=60) as sock:
        sock.sendall(b"POST /tasks HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n" + b'{"kind": "echo", "args": [')
        # Meanwhile, other requests are served as usual.
        status, rec, _ = server.http("POST", "/tasks", {"kind": "noop"})
        assert status == 202
        # recv returns b"" only once the server closes the connection: a
        # server that never did would fail here after the socket's 60 s.
        reply = _read_all(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply[:200]
    error = json.loads(body)["error"]
    assert error["code"] == "request_timeout" and "http_timeout_s" in error["message"]
    assert server.wait_task(rec["id"])["status"] == "succeeded"


def test_a_slow_but_complete_body_is_accepted(server: ServerHandle) -> None:
    body = json.dumps({"kind": "echo", "args": ["slow"]}).encode()
    with socket.create_connection(("127.0.0.1", server.env.port), timeout=60) as sock:
        sock.sendall(b"POST /tasks HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:5])
        sock.sendall(body[5:])
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 202"), reply[:200]
