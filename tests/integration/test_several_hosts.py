"""Several real offload servers, one PostgreSQL database: one queue.

Each test starts 2-3 whole servers (gunicorn, pool, executors; separate run
directories, ports and configs) on a fresh database of the run's private
PostgreSQL server, and checks outcomes in the shared database and in the
trace lines the tasks write (``tests.support.tasks``: which host ran what).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.support.hosts import hosts, query, trace
from tests.support.procs import wait_for

pytestmark = pytest.mark.slow


def test_one_queue_served_by_two_hosts(tmp_path: Path, postgres_url: str) -> None:
    with hosts(2, tmp_path, postgres_url, lease_s=5.0) as (a, b):
        ids = []
        for i in range(40):
            host = (a, b)[i % 2].up
            status, rec, _ = host.http("POST", "/tasks", {"kind": "record_host",
                                                          "args": ["runs.log", str(i)]})
            assert status == 202, rec
            ids.append(rec["id"])
        for task_id in ids:  # any host answers for any task
            assert b.up.wait_task(task_id, 60)["status"] == "succeeded"
            assert a.up.http("GET", f"/tasks/{task_id}")[1]["status"] == "succeeded"
        lines = trace(tmp_path / "trace", "runs.log")
        assert sorted(int(line.split()[0]) for line in lines) == list(range(40))
        # the same key from two hosts: one task
        key = {"Idempotency-Key": "once"}
        first = a.up.http("POST", "/tasks", {"kind": "noop"}, headers=key)[1]["id"]
        assert b.up.http("POST", "/tasks", {"kind": "noop"}, headers=key)[1]["id"] == first
        # stats: the whole queue's counts from either host
        wait_for(lambda: b.up.http("GET", "/queue/stats")[1]["counts"]["succeeded"] == 41, 30,
                 what="41 tasks succeeded")
        stats = a.up.http("GET", "/queue/stats")[1]
        assert stats["counts"]["succeeded"] == 41 and stats["queue_depth"] == 0
        assert len(stats["executors"]) == 2  # this host's own executors
        page = b.up.http("GET", "/tasks?limit=5")[1]
        assert len(page["tasks"]) == 5 and page["next_cursor"]
        assert query(postgres_url, "SELECT count(*) FROM offload_tasks") == [(41,)]
        counts = Counter(line.split()[1] for line in lines)
        assert set(counts) <= {"a", "b"}


def _starts(lines: list[str]) -> Counter[tuple[str, str]]:
    """(value, host) -> starts, from ``gated`` trace lines."""
    return Counter((v, h) for v, h, what in (line.split() for line in lines) if what == "start")


def test_a_host_killed_mid_run_its_tasks_run_on_the_other(tmp_path: Path,
                                                          postgres_url: str) -> None:
    """SIGKILL of a whole host (gunicorn, pool, executors at once) while its
    executors run tasks and more wait in their pipes: every accepted task
    still succeeds, on the other host; only the ones that were running on
    the dead host run twice (attempt counted). (Tasks behind a slow one are
    taken back from the pipe within STEAL_AFTER_S, so none is usually left
    waiting there at the kill; the store's contract tests show that such a
    task gets its attempt back.)"""
    gate = tmp_path / "gate"
    traces = tmp_path / "trace"
    with hosts(2, tmp_path, postgres_url, lease_s=2.0) as (a, b):
        ids = []
        for i in range(30):
            host = (a, b)[i % 2].up
            status, rec, _ = host.http("POST", "/tasks", {
                "kind": "gated", "args": ["runs.log", str(i), str(gate)]})
            assert status == 202, rec
            ids.append(rec["id"])
        owner_a: list[str] = []

        def a_running_and_recorded() -> bool:
            on_a = {v for v, h in _starts(trace(traces, "runs.log")) if h == "a"}
            if len(on_a) < 2:
                return False
            rows = query(postgres_url, "SELECT DISTINCT lease_owner FROM offload_tasks"
                         " WHERE id = ANY(%s)", ([ids[int(v)] for v in on_a],))
            recorded = query(postgres_url, "SELECT count(*) FROM offload_tasks WHERE"
                             " lease_owner = %s AND started_at IS NOT NULL",
                             (rows[0][0],)) if len(rows) == 1 else [(0,)]
            owner_a[:] = [rows[0][0]]
            return recorded[0][0] == len(on_a)  # every start on a is in the store

        wait_for(a_running_and_recorded, 60, what="host a running 2 tasks, starts stored")
        running_on_a = {v for v, h in _starts(trace(traces, "runs.log")) if h == "a"}
        waiting_on_a = {r[0] for r in query(
            postgres_url, "SELECT id FROM offload_tasks WHERE lease_owner = %s"
            " AND started_at IS NULL", (owner_a[0],))}
        a.sigkill()
        gate.touch()
        for task_id in ids:
            rec = b.up.wait_task(task_id, 90)
            assert rec["status"] == "succeeded", rec
        starts = _starts(trace(traces, "runs.log"))
        for i, task_id in enumerate(ids):
            v = str(i)
            runs = starts[(v, "a")] + starts[(v, "b")]
            rec = b.up.http("GET", f"/tasks/{task_id}")[1]
            if v in running_on_a:  # interrupted on a, run again on b
                assert (starts[(v, "a")], starts[(v, "b")], rec["attempts"]) == (1, 1, 2), v
                assert rec["result"] == "b"
            else:  # ran once (on b, or on a before the kill), attempt given back if it waited
                assert runs == 1 and rec["attempts"] == 1, (v, runs, rec["attempts"])
            if task_id in waiting_on_a:
                assert starts[(v, "a")] == 0 and rec["result"] == "b"
