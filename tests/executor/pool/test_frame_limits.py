"""Frames over ``max_frame_bytes`` are never written, with a real pool and
executor: a reply too large fails only its own request, and an executor
whose error or progress text is huge cuts it instead of being killed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from executor.client.client import PoolClient
from executor.wire.codec import encode_call
from executor.wire.errors import PoolError
from tests.executor.helpers import result, submit_many
from tests.support.procs import Env, PoolHandle

MODULES = ["tests.support.tasks", "tests.executor.frame_tasks"]
MAX_FRAME_BYTES = 1024 * 1024
MAX_RESULT_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolHandle]:
    """One pool for the module, one executor (so a pid names the executor)."""
    env = Env(tmp_path_factory.mktemp("frames"), task_modules=MODULES, executors=1,
              max_frame_bytes=MAX_FRAME_BYTES, max_result_bytes=MAX_RESULT_BYTES)
    handle = PoolHandle(env)
    try:
        yield handle
    finally:
        handle.stop()


def test_a_reply_too_large_fails_only_its_request(pool: PoolHandle) -> None:
    ids = submit_many(pool, "big_result", [(250_000,)] * 5)
    for task_id in ids:
        assert pool.wait(task_id)["status"] == "succeeded"
    noop = {"kind": "noop", "payload": encode_call([], {})}

    async def go() -> tuple[Any, Any, Any]:
        # The client enforces the limit on replies, as an HTTP worker's does.
        client = PoolClient(pool.env.socket_path, max_frame_bytes=MAX_FRAME_BYTES)
        try:
            # Written in one loop turn: both are in flight on one connection.
            answers: tuple[Any, Any] = await asyncio.gather(
                client.call("list", {"status": "succeeded", "limit": 10}, timeout_s=10),
                client.call("submit", {"tasks": [noop]}, timeout_s=10),
                return_exceptions=True)
            conn = client._conn
            smaller = await client.call("list", {"status": "succeeded", "limit": 2}, 10)
            assert client._conn is conn and conn is not None and not conn.closed
            return answers[0], answers[1], smaller
        finally:
            await client.close()

    page, submitted, smaller = asyncio.run(go())
    assert isinstance(page, PoolError), page
    assert page.code == "frame_too_large" and page.field == "limit"
    assert "this page of" in page.message and "ask for a smaller limit" in page.message
    assert f"max_frame_bytes ({MAX_FRAME_BYTES})" in page.message
    assert not isinstance(submitted, BaseException), submitted
    assert pool.wait(submitted["tasks"][0]["id"])["status"] == "succeeded"
    assert len(smaller["tasks"]) == 2
    assert "the reply to list" in pool.output()  # the pool's warning names the op


def test_a_huge_exception_message_fails_the_task_not_the_executor(pool: PoolHandle) -> None:
    pid = result(pool.wait(pool.submit("pid")))
    rec = pool.wait(pool.submit("raise_huge", 20_000_000), timeout_s=60)
    assert rec["status"] == "failed"
    error = rec["error"]
    assert error["reason"] == "error"  # not a crash: the executor was not killed
    assert rec["attempts"] == 1
    message, trace = error["message"], error["traceback"]
    assert message.startswith("ValueError: mmmm") and "bytes cut" in message
    assert len(message.encode()) <= 8 * 1024
    assert len(trace.encode()) <= 64 * 1024
    assert trace.startswith("Traceback (most recent call last):")
    assert "bytes cut" in trace and trace.endswith("mmmm\n")  # head and tail kept
    assert result(pool.wait(pool.submit("pid"))) == pid


def test_a_huge_progress_message_is_cut_and_spares_the_executor(pool: PoolHandle) -> None:
    pid = result(pool.wait(pool.submit("pid")))
    rec = pool.wait(pool.submit("huge_progress", 20_000_000), timeout_s=60)
    assert rec["status"] == "succeeded"
    assert result(rec) == pid
    assert rec["progress"] == {"value": 0.5, "message": "p" * 500}
