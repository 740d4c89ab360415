"""Crash isolation with real executors: every way a task can die is recorded,
the executor is replaced, and the next task runs."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest

from tests.support.procs import PoolHandle, pid_alive, wait_for


@pytest.mark.parametrize(("kind", "reason", "needle"), [
    ("raise_value_error", "error", "ValueError: boom"),
    ("exit3", "crash", "crash: exit 3"),
    ("segfault", "crash", "crash: SIGSEGV"),
    ("sigkill_self", "crash", "crash: SIGKILL"),
])
def test_each_crash_kind_fails_with_its_reason_and_the_next_task_runs(
        pool: PoolHandle, kind: str, reason: str, needle: str) -> None:
    bad = pool.submit(kind)
    good = pool.submit("echo", "after", kwargs={"n": 1})
    rec = pool.wait(bad)
    assert rec["status"] == "failed"
    assert rec["error"]["reason"] == reason
    assert needle in rec["error"]["message"]
    if reason == "error":
        assert "Traceback" in rec["error"]["traceback"]
        assert "raise ValueError(message)" in rec["error"]["traceback"]
    assert pool.wait(good)["status"] == "succeeded"
    assert pool.popen.poll() is None, "the pool itself must survive"


def test_dead_executor_is_replaced(pool: PoolHandle) -> None:
    before = {e["pid"] for e in pool.call("stats")["executors"]}
    pool.wait(pool.submit("segfault"))
    pool.wait(pool.submit("noop"))
    after = pool.call("stats")["executors"]
    assert len([e for e in after if e["state"] in ("idle", "busy")]) == 2
    assert {e["pid"] for e in after} != before


def test_sync_and_async_tasks_return_results(pool: PoolHandle) -> None:
    from executor.wire.codec import decode_value
    rec = pool.wait(pool.submit("echo", {"nested": [1, 2]}, kwargs={"flag": True}))
    assert rec["status"] == "succeeded"
    assert decode_value(rec["result"]) == {"args": [{"nested": [1, 2]}], "kwargs": {"flag": True}}
    rec = pool.wait(pool.submit("async_echo", {"nested": [1, 2]}))
    assert rec["status"] == "succeeded"
    assert decode_value(rec["result"]) == {"nested": [1, 2]}


def test_async_tasks_share_a_loop_and_what_they_leave_running_is_cancelled(
        pool: PoolHandle, tmp_path: Path) -> None:
    from executor.wire.codec import decode_value
    mark = tmp_path / "left.txt"
    pids = []
    for _ in range(4):  # two executors: some executor runs two of them in a row
        rec = pool.wait(pool.submit("async_leave_behind", str(mark)))
        assert rec["status"] == "succeeded"
        pids.append(decode_value(rec["result"]))
        # cancelled when its task returned, as asyncio.run would, not left to
        # run in the next task's turn of the loop
        assert mark.read_text().count("cancelled") == len(pids)
    assert len(set(pids)) < len(pids)
    rec = pool.wait(pool.submit("async_echo", [3]))
    assert rec["status"] == "succeeded" and decode_value(rec["result"]) == [3]


def test_socket_is_private(pool: PoolHandle) -> None:
    run_dir = os.path.dirname(pool.env.socket_path)
    assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(pool.env.socket_path).st_mode) == 0o600


def test_crashing_task_leaves_no_stray_process(pool: PoolHandle) -> None:
    """A crashed task's executor is gone, and so is the child the task
    started (the executor's process group is killed, as for a timeout)."""
    pids = {e["pid"] for e in pool.call("stats")["executors"]}
    rec = pool.wait(pool.submit("exit3_leaving_child", "stray.pid"))
    assert rec["status"] == "failed" and rec["error"]["reason"] == "crash"
    crashed = rec["error"]["message"].split("executor pid ")[1].split()[0]
    assert int(crashed) in pids and not pid_alive(int(crashed))
    child = int((pool.env.trace_dir / "stray.pid").read_text())
    wait_for(lambda: not pid_alive(child), 30,
             what=f"the crashed task's child {child} to be killed")
    assert pool.wait(pool.submit("noop"))["status"] == "succeeded"


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of ``pid``'s child processes."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pid:
                found.append((int(entry), fields[0]))
    return found


def test_a_reload_leaves_no_zombie_template(pool: PoolHandle) -> None:
    def templates() -> list[str]:
        """States of the pool's template children, old ones included."""
        return [state for child, state in _children(pool.popen.pid)
                if state == "Z" or b"executor.worker.template" in
                Path(f"/proc/{child}/cmdline").read_bytes()]

    for generation in (2, 3):
        pool.signal(signal.SIGHUP)
        loaded = f"task code loaded (generation {generation})"
        wait_for(lambda loaded=loaded: loaded in pool.output(), 30, what=loaded)
        assert pool.wait(pool.submit("noop"))["status"] == "succeeded"
    wait_for(lambda: len(states := templates()) == 1 and states != ["Z"], 10,
             what="the old templates reaped, the new one alone (no zombie)")
