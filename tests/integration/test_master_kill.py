"""SIGKILL of the gunicorn master under load: the old HTTP workers and pool
store every background call answered 200 before they exit, without waiting
for a new master (which may come much later, or never)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.load import Load, expected_labels, labels_that_ran, start_master
from tests.support.procs import Env, kill_session, session_pids, wait_for


@pytest.mark.slow
def test_background_calls_answered_200_all_run_after_a_master_sigkill(tmp_path: Path) -> None:
    env = Env(tmp_path, app="tests.support.chaos:app", task_modules=["tests.support.chaos"],
              default_max_retries=8)
    old = start_master(env)
    new = None
    load = Load(env.port, tasks_threads=2, pair_threads=4).start()
    try:
        wait_for(lambda: load.count(lambda a: a.route == "pair" and a.status == 200) >= 100,
                 60, what="100 background pairs answered 200")
        os.kill(old.pid, signal.SIGKILL)
        killed_at = time.time()
        # The load goes on against the old HTTP workers until none takes requests.
        wait_for(lambda: load.count(lambda a: a.status == 0 and a.sent_at > killed_at) >= 20,
                 60, what="requests refused after the master's death")
        # No new master yet: the old processes must store every call answered
        # 200 on their own before they exit (a new master may come much later).
        wait_for(lambda: session_pids(old.pid) == [], 60,
                 what="every process of the killed master to exit")
        print(f"\nmaster SIGKILL: every old process gone after {time.time() - killed_at:.1f} s")
        answers = load.stop()
        new = start_master(env)
        must_run = expected_labels(answers)
        after_kill = sum(1 for a in answers if a.answered_at > killed_at and a.status == 200)
        print(f"{len(must_run)} calls and tasks accepted; {after_kill} background pairs "
              "answered 200 after the kill")

        def missing() -> set[str]:
            return must_run - labels_that_ran(env.trace_dir)

        try:
            wait_for(lambda: not missing(), 60, what="every accepted call and task to run")
        except AssertionError:
            lost = missing()
            raise AssertionError(
                f"{len(lost)} of {len(must_run)} accepted calls and tasks never ran, e.g. "
                f"{sorted(lost)[:5]}; old server's log:\n{old.output()[-3000:]}") from None
        assert "the HTTP workers have stored their background calls" in old.output()
        assert "not stored: they are lost" not in old.output()
        bad = [a for a in answers if a.status >= 500 and not (a.status == 503 and a.retry_after)]
        assert not bad, bad[:5]
    finally:
        load.stop()
        if new is not None:
            new.stop()
        old.stop()
        kill_session(old.pid)
