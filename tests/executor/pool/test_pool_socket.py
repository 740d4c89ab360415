"""The pool socket under hand-made bad input: an error reply, and the pool serves on."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import msgpack
import pytest

from executor.wire.errors import PoolError
from executor.wire.protocol import FrameReader, FrameType, encode
from tests.executor.helpers import open_gate
from tests.support.procs import PYTHON, Env, PoolHandle, Proc, wait_for


def _raw_exchange(path: str, data: bytes) -> list[tuple[FrameType, dict]]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(data)
        reader, frames, chunks = FrameReader(), [], b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks += chunk
        frames.extend(reader.feed(chunks))
        return frames


def test_oversize_frame_gets_an_error_reply_and_the_pool_keeps_serving(pool: PoolHandle) -> None:
    header = struct.pack("!2sBBI", b"OF", 1, FrameType.REQUEST, 1 << 30)
    frames = _raw_exchange(pool.env.socket_path, header + b"x" * 100)
    assert frames[0][1]["ok"] is False
    assert frames[0][1]["error"]["code"] == "frame_too_large"
    assert pool.wait(pool.submit("noop"))["status"] == "succeeded"


def test_malformed_frame_gets_an_error_reply(pool: PoolHandle) -> None:
    body = b"\xc1\xc1\xc1"
    frame = struct.pack("!2sBBI", b"OF", 1, FrameType.REQUEST, len(body)) + body
    frames = _raw_exchange(pool.env.socket_path, frame)
    assert frames[0][1]["error"]["code"] == "malformed_frame"
    garbage = _raw_exchange(pool.env.socket_path, b"GET / HTTP/1.1\r\n\r\n")
    assert garbage[0][1]["error"]["code"] == "malformed_frame"
    assert pool.wait(pool.submit("noop"))["status"] == "succeeded"


def test_unknown_op_and_unknown_kind_keep_the_connection(pool: PoolHandle) -> None:
    payload = msgpack.packb([[], {}])
    data = (encode(FrameType.REQUEST, {"id": 1, "op": "explode", "args": {}})
            + encode(FrameType.REQUEST, {"id": 2, "op": "submit",
                                         "args": {"tasks": [{"kind": "ech", "payload": payload}]}})
            + encode(FrameType.REQUEST, {"id": 3, "op": "health", "args": {}}))
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(pool.env.socket_path)
        s.sendall(data)
        reader, got = FrameReader(), {}
        while len(got) < 3:
            for _, body in reader.feed(s.recv(65536)):
                got[body["id"]] = body
    assert got[1]["error"]["code"] == "unknown_op"
    assert got[2]["error"]["code"] == "unknown_kind"
    assert "did you mean: echo" in got[2]["error"]["message"]
    assert got[2]["error"]["field"] == "tasks[0].kind"
    assert got[3]["ok"] is True


def test_a_peer_with_another_uid_is_refused(pool: PoolHandle) -> None:
    """Even with the directory and socket opened up, another user's connection
    is closed by the pool's SO_PEERCRED check."""
    if os.getuid() != 0:
        pytest.skip("needs root to connect as another user")
    run_dir = os.path.dirname(pool.env.socket_path)
    os.chmod(run_dir, 0o755)
    os.chmod(pool.env.socket_path, 0o666)
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                os.setuid(65534)
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(10)
                    s.connect(pool.env.socket_path)
                    try:
                        s.sendall(encode(FrameType.REQUEST,
                                         {"id": 1, "op": "health", "args": {}}))
                        answer = s.recv(65536)
                    except (ConnectionResetError, BrokenPipeError):
                        answer = b""
                    code = 0 if answer == b"" else 2  # closed without an answer
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.chmod(run_dir, 0o700)
        os.chmod(pool.env.socket_path, 0o600)
    assert pool.call("health")["executors_up"] >= 1


def test_submit_can_answer_with_ids_only_and_keys_deduplicate(pool: PoolHandle) -> None:
    """The outbox's form of ``submit``: ids, not records; a re-send stores nothing new."""
    specs = [{"kind": "echo", "payload": msgpack.packb([[n], {}]),
              "idempotency_key": f"bg:test:{n}"} for n in range(3)]
    first = pool.call("submit", {"tasks": specs, "reply": "ids"})
    again = pool.call("submit", {"tasks": specs, "reply": "ids"})
    assert set(first) == {"ids"} and len(first["ids"]) == 3 and again == first
    assert [pool.wait(i)["status"] for i in first["ids"]] == ["succeeded"] * 3
    assert pool.call("stats")["counts"]["succeeded"] == 3


def test_stats_show_an_executors_memory_once_it_has_run_a_task(pool: PoolHandle) -> None:
    wait_for(lambda: pool.call("health")["executors_up"] == pool.env.settings["executors"],
             what="every executor up")
    assert pool.wait(pool.submit("noop"))["status"] == "succeeded"
    rows = pool.call("stats")["executors"]
    assert any(r["tasks_run"] for r in rows)
    for row in rows:  # null, not 0.0, for one that has not reported yet
        assert (row["rss_mb"] is None) == (row["tasks_run"] == 0), row
        assert row["rss_mb"] is None or row["rss_mb"] > 1


def test_a_second_pool_on_the_same_store_is_refused_and_takes_nothing(pool: PoolHandle) -> None:
    """Two pools on one SQLite file would each recover the other's running tasks
    as lost and run them again; the second one must stop at once instead."""
    running = pool.submit("gate", "second-pool-gone")  # runs until the second pool is gone
    wait_for(lambda: pool.call("get", {"id": running})["status"] == "running")
    second = Proc([PYTHON, "-m", "executor", "--config", str(pool.env.config_path)], pool.env,
                  "second-pool")
    try:
        assert second.popen.wait(60) == 4
        out = second.output()
        assert f"another offload pool (pid {pool.popen.pid}) is using this store" in out
        assert "recovered" not in out
    finally:
        second.stop()
    assert pool.call("get", {"id": running})["status"] == "running"  # still, not taken
    open_gate(pool, "second-pool-gone")
    done = pool.wait(running)
    assert (done["status"], done["attempts"]) == ("succeeded", 1)  # ran once, not taken
    assert pool.wait(pool.submit("noop"))["status"] == "succeeded"  # its socket still works


def test_a_pool_does_not_take_the_socket_of_a_live_one(pool: PoolHandle, tmp_path: Path) -> None:
    """With its own store but the same run_dir, a second pool still leaves the
    first one's socket alone."""
    (tmp_path / "other").mkdir()
    env = Env(tmp_path / "other", run_dir=pool.env.settings["run_dir"])
    assert env.settings["store_url"] != pool.env.settings["store_url"]
    second = Proc([PYTHON, "-m", "executor", "--config", str(env.config_path)], env,
                  "second-pool")
    try:
        assert second.popen.wait(60) == 3
        assert f"another pool is listening on {pool.env.socket_path}" in second.output()
    finally:
        second.stop()
    assert pool.wait(pool.submit("noop"))["status"] == "succeeded"


@pytest.mark.parametrize("wait_s", ["soon", -1, 1e9, float("nan"), True])
def test_get_refuses_a_wait_it_cannot_honour(pool: PoolHandle, wait_s: object) -> None:
    task_id = pool.submit("sleep", 0.5)
    with pytest.raises(PoolError) as info:
        pool.call("get", {"id": task_id, "wait_s": wait_s})
    assert (info.value.code, info.value.field) == ("invalid", "wait_s")
    assert pool.call("get", {"id": task_id, "wait_s": 10})["status"] == "succeeded"
