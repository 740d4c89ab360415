"""What a ``503 pool_unavailable`` means, shown with real gunicorn and a real
pool: no answer came from the pool, yet the submission may have reached it
and been stored. Sent again with the same ``Idempotency-Key``, it is the
same task, stored once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.support.procs import Env, ServerHandle, running, wait_for


def test_a_submit_the_pool_did_not_answer_may_be_stored_and_a_retry_with_its_key_finds_it(
        tmp_path: Path) -> None:
    env = Env(tmp_path, workers=1, executors=1, http_timeout_s=2.0)
    with running(lambda: ServerHandle(env)) as server:
        pool = server.pool_pid()
        assert pool is not None
        os.kill(pool, signal.SIGSTOP)  # the request reaches its socket; no answer comes
        try:
            status, body, headers = server.http(
                "POST", "/tasks", {"kind": "echo", "args": ["once"]},
                headers={"Idempotency-Key": "order-14"})
        finally:
            os.kill(pool, signal.SIGCONT)
        assert (status, body["error"]["code"], headers.get("retry-after")) == (
            503, "pool_unavailable", "1")
        message = body["error"]["message"]
        assert "may or may not have been stored" in message
        assert "same Idempotency-Key" in message
        # The pool read the request once it ran again: the task was stored.
        def stored() -> list[dict[str, object]]:
            status, page, _ = server.http("GET", "/tasks?kind=echo")
            return page["tasks"] if status == 200 else []

        first = wait_for(stored, 30, what="the unanswered submission to be stored")
        # The retry the message advises: the same task, not a second one.
        status, rec, _ = server.http("POST", "/tasks", {"kind": "echo", "args": ["once"]},
                                     headers={"Idempotency-Key": "order-14"})
        assert status == 202 and [t["id"] for t in first] == [rec["id"]]
        assert server.wait_task(rec["id"])["status"] == "succeeded"
        assert [t["id"] for t in stored()] == [rec["id"]]
