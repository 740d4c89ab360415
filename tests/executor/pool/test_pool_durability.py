"""kill -9 of the pool loses nothing; SIGTERM lets running tasks finish."""

from __future__ import annotations

import signal
import time

from executor.store import open_store
from executor.wire.codec import encode_call
from tests.executor.helpers import open_gate
from tests.support.procs import Env, PoolHandle, wait_for


def test_kill_9_with_1000_pending_then_restart_runs_every_task(env: Env) -> None:
    env.write_config(executors=1)
    pool = PoolHandle(env)
    try:
        # Keep the single executor busy so the 1,000 tasks stay pending. One
        # retry: the attempt the kill interrupts is counted, and it runs again.
        blocker = pool.submit("gate", "blocker", max_retries=1, kwargs={"limit_s": 120.0})
        # "running" in a reply means the task started and its start is stored:
        # from then on a crash counts the attempt (a task only waiting in a
        # pipe shows "pending"). The kill below may come at once.
        wait_for(lambda: pool.call("get", {"id": blocker})["status"] == "running",
                 what="the blocker to run")
        # No retries: a task claimed into the executor's pipe (prefetch) but
        # never started must not be charged for the crash, let alone failed.
        spec = {"kind": "noop", "payload": encode_call([], {}), "max_retries": 0}
        ids = []
        for _ in range(10):
            ids += [t["id"] for t in pool.call("submit", {"tasks": [spec] * 100})["tasks"]]
        assert len(set(ids)) == 1000
        pool.signal(signal.SIGKILL)
        pool.popen.wait(10)
    finally:
        pool.stop()
    # What the crash kept: the start a reply showed, and no start of a task
    # that only waited in the pipe.
    store = open_store(env.settings["store_url"])
    try:
        kept = store.get(blocker)
        assert kept is not None and (kept.status, kept.attempts) == ("running", 1), kept
        assert kept.started_at is not None, kept
        waited = [r for r in map(store.get, ids) if r is not None and r.status == "running"]
        assert all(r.started_at is None for r in waited), [r for r in waited if r.started_at]
    finally:
        store.close()
    env.write_config(executors=2)
    restarted_at = time.time()
    pool = PoolHandle(env)
    try:
        def all_done() -> bool:
            counts = pool.call("stats")["counts"]
            return counts["succeeded"] >= 1000
        try:
            wait_for(all_done, 60, what="1,000 recovered tasks to succeed")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; stats: {pool.call('stats')}; blocker: "
                                 f"{pool.call('get', {'id': blocker})}; pool log:\n"
                                 f"{pool.output()[-3000:]}") from None
        records = [pool.call("get", {"id": i}) for i in ids]
        # Each one that is not (succeeded, 1), with what the store kept of it.
        odd = [(r["id"], r["status"], r["attempts"], r["started_at"], r["error"])
               for r in records if (r["status"], r["attempts"]) != ("succeeded", 1)]
        assert not odd, (len(odd), odd[:5], pool.output()[-3000:])
        # The task running at the kill was recovered and started again (its
        # gate still shut): once let through it succeeds on a second attempt,
        # the interrupted one counted.
        wait_for(lambda: (pool.call("get", {"id": blocker})["started_at"] or 0) >= restarted_at,
                 60, what="the interrupted blocker to start again after the restart")
        open_gate(pool, "blocker")
        rec = pool.wait(blocker)
        assert (rec["status"], rec["attempts"]) == ("succeeded", 2), (rec, pool.output()[-3000:])
        assert rec["started_at"] >= restarted_at
    finally:
        pool.stop()


def test_sigterm_lets_the_running_task_finish_and_keeps_pending(env: Env) -> None:
    env.write_config(executors=1, graceful_timeout_s=20)
    pool = PoolHandle(env)
    try:
        running = pool.submit("sleep", 1.0)
        wait_for(lambda: pool.call("get", {"id": running})["status"] == "running")
        waiting = [pool.submit("noop") for _ in range(5)]
        pool.signal(signal.SIGTERM)
        assert pool.popen.wait(30) == 0
    finally:
        pool.stop()
    store = open_store(env.settings["store_url"])
    try:
        got = store.get(running)
        assert got is not None and got.status == "succeeded"
        # One of the waiting tasks may have been in the pipe: released, not run.
        assert [store.get(i).status for i in waiting] == ["pending"] * 5  # type: ignore[union-attr]
        assert all(store.get(i).attempts == 0 for i in waiting)  # type: ignore[union-attr]
    finally:
        store.close()


def test_kill_9_charges_no_attempt_to_tasks_that_were_only_waiting_in_a_pipe(env: Env) -> None:
    """Tasks are claimed into an executor's pipe ahead of time (prefetch); a
    pool killed then must not charge them for it, let alone fail them."""
    env.write_config(executors=1)
    spec = {"kind": "sleep", "payload": encode_call([0.05], {}), "max_retries": 0}
    pool = PoolHandle(env)
    try:
        ids = [t["id"] for t in pool.call("submit", {"tasks": [spec] * 40})["tasks"]]
        wait_for(lambda: pool.call("stats")["counts"]["succeeded"] >= 1, 30,
                 what="the first task to finish: the pipe is full behind it")
        pool.signal(signal.SIGKILL)
        pool.popen.wait(10)
    finally:
        pool.stop()
    pool = PoolHandle(env)
    try:
        wait_for(lambda: pool.call("stats")["queue_depth"] == 0
                 and pool.call("stats")["counts"]["running"] == 0, 60,
                 what="every task to finish after the restart")
        records = [pool.call("get", {"id": i}) for i in ids]
        # At most the one task running at the kill is lost (it has no retries).
        lost = [r for r in records if r["status"] == "failed"]
        assert len(lost) <= 1, [(r["id"], r["attempts"], r["error"]) for r in lost]
        assert all(r["error"]["reason"] == "lost" for r in lost)
        assert {(r["status"], r["attempts"]) for r in records if r not in lost} == {
            ("succeeded", 1)}
    finally:
        pool.stop()


def test_kill_9_right_after_a_reply_said_running_counts_the_attempt(env: Env) -> None:
    """Nothing else happens between the reply and the kill (no turn writes the
    start by chance): the reply itself must not show a start the store lacks."""
    pool = PoolHandle(env)
    try:
        task_id = pool.submit("gate", "said-running", max_retries=1, kwargs={"limit_s": 120.0})
        wait_for(lambda: pool.call("get", {"id": task_id})["status"] == "running",
                 what="the task to run")
        pool.signal(signal.SIGKILL)
        pool.popen.wait(10)
    finally:
        pool.stop()
    restarted_at = time.time()
    pool = PoolHandle(env)
    try:
        wait_for(lambda: (pool.call("get", {"id": task_id})["started_at"] or 0) >= restarted_at,
                 60, what="the interrupted task to start again after the restart")
        open_gate(pool, "said-running")
        rec = pool.wait(task_id)
        assert (rec["status"], rec["attempts"]) == ("succeeded", 2)
    finally:
        pool.stop()
