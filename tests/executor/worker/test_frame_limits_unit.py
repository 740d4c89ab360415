"""Writers keep their frames within max_frame_bytes: the executor's DONE
frame and text cuts, and the pool socket's replies (no processes)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from executor.pool.listener import ClientConn
from executor.wire.protocol import HEADER_SIZE, FrameReader, FrameType, encode
from executor.worker.doneframe import clip, done_frame


def _body(frame: bytes, max_frame_bytes: int) -> dict[str, Any]:
    assert len(frame) - HEADER_SIZE <= max_frame_bytes
    [(_, body)] = list(FrameReader(max_frame_bytes).feed(frame))
    return body


def test_clip_keeps_text_that_fits_and_cuts_the_rest_within_the_bytes() -> None:
    assert clip("short", 100, keep_tail=False) == "short"
    head = clip("a" * 1000 + "z", 100, keep_tail=False)
    assert len(head.encode()) <= 100 and head.startswith("aaa") and "bytes cut" in head
    both = clip("h" * 1000 + "TAIL", 100, keep_tail=True)
    assert len(both.encode()) <= 100 and both.startswith("hhh") and both.endswith("TAIL")
    wide = clip("é" * 1000, 101, keep_tail=True)  # cut inside a character: dropped
    assert len(wide.encode()) <= 101 and wide.strip("é").strip().startswith("...")
    assert clip("bad \udcff byte", 100, keep_tail=False) == "bad \\udcff byte"


def _done(**changes: Any) -> dict[str, Any]:
    done = {"id": "t1", "ok": True, "result": None, "error": None, "retry_delay_s": None,
            "retryable": True, "rss_mb": 10.0, "recycle": None}
    done.update(changes)
    return done


@pytest.mark.parametrize("max_frame_bytes", [1024, 1024 * 1024])
def test_done_frame_cuts_an_error_to_fit(max_frame_bytes: int) -> None:
    error = {"reason": "error", "message": "ValueError: " + "m" * 3_000_000,
             "traceback": "Traceback\n" + "t" * 3_000_000 + "\nValueError: \udcff"}
    body = _body(done_frame(_done(ok=False, error=error), max_frame_bytes,
                            max_frame_bytes // 2), max_frame_bytes)
    assert body["error"]["reason"] == "error" and body["retryable"] is True
    assert body["error"]["message"].startswith("ValueError: mmm")
    assert len(body["error"]["message"].encode()) <= min(8 * 1024, max_frame_bytes // 8)
    trace = body["error"]["traceback"]
    assert trace.startswith("Traceback") and trace.endswith("ValueError: \\udcff")
    assert len(trace.encode()) <= min(64 * 1024, max_frame_bytes // 4)


def test_done_frame_replaces_a_result_too_large_to_send() -> None:
    limits = (1024, 4096)  # max_frame_bytes, max_result_bytes: not a loadable config
    body = _body(done_frame(_done(result=b"r" * 2000), *limits), 1024)
    assert body["ok"] is False and body["result"] is None and body["retryable"] is False
    assert body["error"]["reason"] == "error"
    assert body["error"]["message"].startswith("result too large to send back: 2000 bytes")
    assert "max_frame_bytes is 1024" in body["error"]["message"]
    fits = _body(done_frame(_done(result=b"r" * 500), *limits), 1024)
    assert fits["ok"] is True and fits["result"] == b"r" * 500


class _Transport:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False


def _exchange(requests: list[tuple[str, Any]], max_frame_bytes: int = 4096
              ) -> dict[int, dict[str, Any]]:
    """Feed REQUEST frames to a ClientConn whose handler answers each with its
    ``(op, answer)``; a ``str`` answer is an internal error with that message."""
    async def main() -> bytes:
        def handle(conn: ClientConn, req_id: int, op: str, args: dict[str, Any]) -> None:
            answer = requests[req_id - 1][1]
            if isinstance(answer, str):
                conn.fail(req_id, "internal", answer, "f" * 10_000)
            else:
                conn.reply(req_id, answer)

        conn = ClientConn(handle, max_frame_bytes)
        transport = _Transport()
        conn.transport = transport  # type: ignore[assignment]
        conn.data_received(b"".join(encode(FrameType.REQUEST, {"id": i, "op": op, "args": {}})
                                    for i, (op, _) in enumerate(requests, 1)))
        await asyncio.sleep(0)  # the replies go out at the end of the loop turn
        assert conn.ops == {}
        return transport.data

    data = asyncio.run(main())
    return {body["id"]: body for _, body in FrameReader(max_frame_bytes).feed(data)}


def test_a_reply_over_the_limit_is_an_error_for_that_request_only() -> None:
    record = {"id": "t1", "result": b"r" * 5000}
    got = _exchange([("list", {"tasks": [record, record], "next_cursor": None}),
                     ("health", {"executors_up": 1}), ("get", record),
                     ("submit", {"tasks": [record]}), ("stats", "x" * 100_000)])
    page = got[1]["error"]
    assert (page["code"], page["field"]) == ("frame_too_large", "limit")
    assert page["message"].startswith("this page of 2 records is ")
    assert page["message"].endswith("over max_frame_bytes (4096); ask for a smaller limit")
    assert got[2] == {"id": 2, "ok": True, "result": {"executors_up": 1}}
    assert got[3]["error"]["code"] == "frame_too_large"
    assert got[3]["error"]["message"].startswith("the reply to 'get' is ")
    assert got[4]["error"]["message"].startswith("the 1 tasks were stored, but the reply")
    # An error too long for a frame keeps its code, the start of its message is kept.
    assert got[5]["error"]["code"] == "internal"
    assert got[5]["error"]["message"].startswith("xxx")
    assert got[5]["error"]["message"].endswith("(100000 characters, cut)")
