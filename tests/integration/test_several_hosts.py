"""Several real offload servers, one PostgreSQL database: one queue.

Each test starts 2-3 whole servers (gunicorn, pool, executors; separate run
directories, ports and configs) on a fresh database of the run's private
PostgreSQL server, and checks outcomes in the shared database and in the
trace lines the tasks write (``tests.support.tasks``: which host ran what).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.store import open_store
from tests.support.hosts import Host, hosts, query, trace
from tests.support.postgres import PostgresServer, running_server
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


def _idle(host: Host) -> bool:
    """Whether every executor of ``host`` is up and runs no task."""
    executors = host.up.http("GET", "/queue/stats")[1]["executors"]
    return bool(executors) and all(e["task_id"] is None for e in executors)


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


def test_a_host_paused_past_its_lease_cannot_overwrite_the_rerun(tmp_path: Path,
                                                                 postgres_url: str) -> None:
    """A host SIGSTOPped while it runs a task: after its lease expires the
    other host runs the task again and stores its outcome; when the paused
    host wakes up (its task finishing too), nothing it writes changes the
    stored outcome, status or attempt count."""
    gate = tmp_path / "gate"
    traces = tmp_path / "trace"
    with hosts(2, tmp_path, postgres_url, lease_s=1.5) as (a, b):
        status, rec, _ = a.up.http("POST", "/tasks", {
            "kind": "gated", "args": ["runs.log", "t", str(gate)]})
        assert status == 202
        task_id = rec["id"]
        wait_for(lambda: query(postgres_url, "SELECT started_at IS NOT NULL FROM offload_tasks"
                               " WHERE id = %s", (task_id,)) == [(True,)] and
                 _starts(trace(traces, "runs.log")) == {("t", "a"): 1}, 30,
                 what="the task to start on host a")
        a.pause()  # SIGSTOP: pool, executors, gunicorn
        try:
            wait_for(lambda: _starts(trace(traces, "runs.log"))[("t", "b")] == 1, 60,
                     what="host b to run the task again after a's lease expired")
            gate.touch()
            done = b.up.wait_task(task_id, 30)
            assert (done["status"], done["result"], done["attempts"]) == ("succeeded", "b", 2)
        finally:
            a.pause(signal.SIGCONT)
        # a's executor finishes its run too ("t a end"); a's pool finds its lease
        # gone and either drops the outcome or kills the run: both are logged.
        wait_for(lambda: "no longer this pool's" in a.up.output()
                 or "killing this pool's" in a.up.output(), 30,
                 what="host a to notice that the task is no longer its own")
        wait_for(lambda: _idle(a), 30, what="host a's run to end (finished or killed)")
        assert a.up.http("GET", "/readyz")[0] == 200  # a serves on
        for host in (a, b):
            after = host.up.http("GET", f"/tasks/{task_id}")[1]
            assert {k: after[k] for k in ("status", "result", "attempts", "finished_at")} == {
                k: done[k] for k in ("status", "result", "attempts", "finished_at")}


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, to stop and start."""
    with running_server() as server:
        yield server


def test_postgres_crash_and_restart_loses_no_accepted_task(
        tmp_path: Path, own_postgres: PostgresServer) -> None:
    """PostgreSQL stopped at once (no checkpoint: a crash) and started again
    while clients submit to two hosts: every 202 is in the database and
    runs; meanwhile submitters get 503 with Retry-After; the pools carry on
    by themselves (same processes) once the database is back."""
    url = own_postgres.url(own_postgres.create_database())
    with hosts(2, tmp_path, url, lease_s=5.0) as (a, b):
        pools = {a.up.pool_pid(), b.up.pool_pid()}
        answers: list[tuple[int, int, str | None, str | None]] = []  # (i, status, id, retry)
        stop = threading.Event()

        def submit() -> None:
            i = 0
            while not stop.is_set():
                host = (a, b)[i % 2].up
                try:
                    status, rec, headers = host.http(
                        "POST", "/tasks", {"kind": "noop"},
                        headers={"Idempotency-Key": f"k{i}"}, timeout_s=20)
                except OSError as exc:  # no answer at all: never a 202
                    answers.append((i, 0, None, repr(exc)))
                else:
                    retry = {k.lower(): v for k, v in headers.items()}.get("retry-after")
                    answers.append((i, status, rec["id"] if status == 202 else None, retry))
                i += 1

        thread = threading.Thread(target=submit)
        thread.start()
        try:
            wait_for(lambda: sum(s == 202 for _, s, _, _ in answers) >= 30, 60,
                     what="30 tasks accepted")
            own_postgres.stop("immediate")
            mark = len(answers)
            wait_for(lambda: sum(s == 503 for _, s, _, _ in answers[mark:]) >= 5, 60,
                     what="submitters refused with 503 while the database is down")
            own_postgres.start()
            back = len(answers)
            wait_for(lambda: sum(s == 202 for _, s, _, _ in answers[back:]) >= 30, 60,
                     what="30 tasks accepted after the restart")
        finally:
            stop.set()
            thread.join(60)
        accepted = {task_id for _, s, task_id, _ in answers if s == 202}
        refused = [(i, s, retry) for i, s, _, retry in answers if s != 202]
        assert refused and all(s == 503 and retry == "1" for _, s, retry in refused), refused

        def unfinished() -> tuple[set[str], list[tuple[object, ...]]]:
            rows = query(url, "SELECT id, status, attempts, lease_owner, lease_expires_at,"
                         " started_at FROM offload_tasks WHERE id = ANY(%s)", (list(accepted),))
            return accepted - {r[0] for r in rows}, [r for r in rows if r[1] != "succeeded"]

        try:
            wait_for(lambda: unfinished() == (set(), []), 90, what="every accepted task to succeed")
        except AssertionError:
            missing, waiting = unfinished()
            raise AssertionError(f"accepted but not stored: {missing}; not succeeded: {waiting}; "
                                 f"host a:\n{a.up.output()[-3000:]}") from None
        assert {a.up.pool_pid(), b.up.pool_pid()} == pools  # no pool was restarted
        for host in (a, b):  # every error above named the database, never its password
            assert "store_unavailable" in host.up.output() or "refused" in host.up.output()
            assert own_postgres.password not in host.up.output()


def test_ten_thousand_tasks_over_three_pools_each_run_once(tmp_path: Path,
                                                           postgres_url: str) -> None:
    with hosts(3, tmp_path, postgres_url, lease_s=10.0) as group:
        accepted: list[str] = []
        for n in range(20):  # 20 batches of 500, spread over the three hosts
            body = {"tasks": [{"kind": "record_host", "args": ["runs.log", str(n * 500 + i)]}
                              for i in range(500)]}
            status, reply, _ = group[n % 3].up.http("POST", "/tasks/batch", body, timeout_s=60)
            assert status == 202, reply
            accepted += [rec["id"] for rec in reply["tasks"]]
        assert len(set(accepted)) == 10_000
        wait_for(lambda: query(postgres_url, "SELECT count(*) FROM offload_tasks"
                               " WHERE status = 'succeeded'") == [(10_000,)], 240, 0.5,
                 what="10,000 tasks to succeed")
        lines = trace(tmp_path / "trace", "runs.log")
        values = Counter(line.split()[0] for line in lines)
        assert len(lines) == 10_000 and set(values) == {str(i) for i in range(10_000)}
        assert query(postgres_url, "SELECT max(attempts), min(attempts) FROM offload_tasks") == [
            (1, 1)]
        ran_on = Counter(line.split()[1] for line in lines)
        assert set(ran_on) == {"a", "b", "c"}, ran_on  # every pool took part
        stats = group[2].up.http("GET", "/queue/stats")[1]
        assert stats["counts"]["succeeded"] == 10_000 and stats["queue_depth"] == 0


def test_a_forced_cancel_through_one_host_stops_the_run_on_another(
        tmp_path: Path, postgres_url: str) -> None:
    gate = tmp_path / "gate"  # never opened: the task runs until it is stopped
    traces = tmp_path / "trace"
    with hosts(2, tmp_path, postgres_url, lease_s=1.5) as (a, b):
        task_id = a.up.http("POST", "/tasks", {
            "kind": "gated", "args": ["runs.log", "t", str(gate), 120]})[1]["id"]
        wait_for(lambda: _starts(trace(traces, "runs.log")) == {("t", "a"): 1}, 30,
                 what="the task to start on host a")
        assert b.up.http("DELETE", f"/tasks/{task_id}")[0] == 409  # running: needs force
        status, rec, _ = b.up.http("DELETE", f"/tasks/{task_id}?force=true")
        assert status == 200 and rec["status"] == "cancelled", rec
        # host a learns it at its next renewal and kills the run
        wait_for(lambda: "no longer this pool's" in a.up.output(), 30,
                 what="host a to give the cancelled task up")
        wait_for(lambda: _idle(a), 30, what="host a's executors to be free")
        assert "t a end" not in trace(traces, "runs.log")  # it was stopped, not finished
        assert a.up.http("GET", f"/tasks/{task_id}")[1]["status"] == "cancelled"


@pytest.mark.parametrize("sizes", [
    {},
    # One executor, room to grow: the running task fills it, so the
    # autoscaler asks the (unreachable) store every tick whether due tasks
    # wait; its error must not stop the lease keeper's turn in that tick.
    {"executors": 1, "executors_max": 2},
], ids=["default", "autoscaling"])
def test_a_pool_that_cannot_renew_kills_its_running_tasks(
        tmp_path: Path, own_postgres: PostgresServer, sizes: dict[str, int]) -> None:
    """The database goes away for longer than the lease: the pool kills the
    task it runs rather than let it run unowned (another pool may take it
    over); once the database is back, the task is swept and runs again."""
    url = own_postgres.url(own_postgres.create_database())
    gate = tmp_path / "gate"
    traces = tmp_path / "trace"
    with hosts(1, tmp_path, url, lease_s=2.0, **sizes) as (a,):
        task_id = a.up.http("POST", "/tasks", {
            "kind": "gated", "args": ["runs.log", "t", str(gate), 120]})[1]["id"]
        wait_for(lambda: query(url, "SELECT started_at IS NOT NULL FROM offload_tasks"
                               " WHERE id = %s", (task_id,)) == [(True,)], 30,
                 what="the task's start to be stored")
        own_postgres.stop("immediate")
        try:
            wait_for(lambda: "killing this pool's 1 running task(s)" in a.up.output(), 30,
                     what="the pool to kill its task")
            # (/queue/stats needs the database; the log says the executor is gone)
            wait_for(lambda: "killed)" in a.up.output(), 30, what="the executor to be killed")
            assert "t a end" not in trace(traces, "runs.log")  # killed, not finished
        finally:
            own_postgres.start()
        gate.touch()
        done = a.up.wait_task(task_id, 60)  # swept after its lease, run again
        assert (done["status"], done["attempts"]) == ("succeeded", 2)
        assert _starts(trace(traces, "runs.log")) == {("t", "a"): 2}


def _cancel_and_retry_elsewhere(postgres_url: str, task_id: str) -> None:
    """Force-cancel the running ``task_id`` and retry it, as another host's pool would."""
    other = open_store(postgres_url, writer=True)
    try:
        rec = other.get(task_id)
        assert rec is not None and rec.status == "running"
        cancelled = other.cancel(task_id, "api", time.time(), force=True,
                                 token=rec.lease_token)
        assert cancelled is not None and cancelled.status == "cancelled"
        assert [r.id for r in other.retry([task_id], time.time())] == [task_id]
    finally:
        other.close()


def test_a_run_cancelled_elsewhere_and_retried_is_stopped_when_claimed_again(
        tmp_path: Path, postgres_url: str) -> None:
    """Another host cancels a running task with force and re-runs it
    (``POST /tasks/{id}/retry``, done here through the store as that host's
    pool does); this host claims the task again before its next renewal has
    noticed the cancel. The earlier run must stop then: it is not this pool's
    any more, and must not run on beside the re-run (nor take its place in
    the pool's books, leaving the re-run's lease unrenewed)."""
    gate = tmp_path / "gate"
    traces = tmp_path / "trace"
    # lease_s 60: renewals 20 s apart, so the re-claim comes long before one.
    with hosts(1, tmp_path, postgres_url, lease_s=60.0, executors=2) as (a,):
        task_id = a.up.http("POST", "/tasks", {
            "kind": "gated", "args": ["runs.log", "t", str(gate), 120]})[1]["id"]
        wait_for(lambda: _starts(trace(traces, "runs.log")) == {("t", "a"): 1}, 30,
                 what="the task to start on host a")
        _cancel_and_retry_elsewhere(postgres_url, task_id)
        wait_for(lambda: _starts(trace(traces, "runs.log")) == {("t", "a"): 2}, 30,
                 what="host a to run the task again")
        gate.touch()
        done = a.up.wait_task(task_id, 60)
        assert (done["status"], done["attempts"]) == ("succeeded", 1)
        # Only the re-run finished: the cancelled run was stopped when the task
        # was claimed again, before the gate opened.
        assert trace(traces, "runs.log").count("t a end") == 1


def test_an_async_run_cancelled_elsewhere_and_retried_reruns_beside_nothing_of_its_own(
        tmp_path: Path, postgres_url: str) -> None:
    """As above with an ``async def`` task and one executor: the earlier run
    is cancelled alone (its executor lives on), and the re-run waits until it
    has left, never sharing the executor with a run of the same id (the
    executor and the pool know running tasks by id)."""
    traces = tmp_path / "trace"
    with hosts(1, tmp_path, postgres_url, lease_s=60.0, executors=1) as (a,):
        task_id = a.up.http("POST", "/tasks", {
            "kind": "async_gate", "args": ["gate", "t", 120]})[1]["id"]
        wait_for(lambda: trace(traces, "async_started.log") == ["t"], 30,
                 what="the task to start on host a")
        _cancel_and_retry_elsewhere(postgres_url, task_id)
        wait_for(lambda: trace(traces, "async_started.log") == ["t", "t"], 30,
                 what="host a to run the task again")
        (traces / "gate").touch()
        done = a.up.wait_task(task_id, 60)
        assert (done["status"], done["attempts"]) == ("succeeded", 1), done
        assert "broke the protocol" not in a.up.output()
