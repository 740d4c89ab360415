"""Operating offload under real gunicorn: exact metrics, live resize on HUP."""

from __future__ import annotations

import os
import signal

from tests.support.procs import Env, ServerHandle, session_pids, wait_for
from tests.support.scrape import scrape, value


def test_metrics_count_exactly_what_happened(server: ServerHandle) -> None:
    ids = [server.http("POST", "/tasks", body)[1]["id"] for body in (
        {"kind": "echo", "args": [1]}, {"kind": "echo", "args": [2]},
        {"kind": "echo", "args": [3]},
        {"kind": "raise_value_error"},
        {"kind": "segfault"},
        {"kind": "soft_timeout", "args": ["m.log"]},
        {"kind": "flaky", "args": ["flaky.log", 2]},
    )]
    records = [server.wait_task(i, 60) for i in ids]
    assert [r["status"] for r in records] == ["succeeded"] * 3 + ["failed"] * 3 + ["succeeded"]
    m = scrape(server)
    sub, fin, fail = ("offload_tasks_submitted_total", "offload_tasks_finished_total",
                      "offload_task_failures_total")
    assert value(m, sub, kind="echo") == 3
    assert value(m, sub, kind="flaky") == 1
    assert value(m, fin, kind="echo", outcome="succeeded") == 3
    assert value(m, fin, kind="flaky", outcome="succeeded") == 1
    assert value(m, fin, kind="raise_value_error", outcome="failed") == 1
    assert value(m, fin, kind="segfault", outcome="failed") == 1
    assert value(m, fin, kind="soft_timeout", outcome="failed") == 1
    assert value(m, fail, kind="raise_value_error", reason="error") == 1
    assert value(m, fail, kind="segfault", reason="crash") == 1
    assert value(m, fail, kind="soft_timeout", reason="timeout") == 1
    assert value(m, fail, kind="flaky", reason="error") == 1
    assert value(m, "offload_task_retries_total", kind="flaky") == 1
    assert value(m, "offload_executor_restarts_total", reason="crash") >= 1
    for kind, runs in (("echo", 3), ("flaky", 2), ("segfault", 1), ("soft_timeout", 1)):
        assert value(m, "offload_task_duration_seconds_count", kind=kind) == runs
        assert value(m, "offload_task_queue_seconds_count", kind=kind) == runs
        assert value(m, "offload_task_duration_seconds_bucket", kind=kind, le="+Inf") == runs
    assert value(m, "offload_pool_up") == 1


def test_counts_survive_an_http_worker_restart_and_agree_across_workers(env: Env) -> None:
    env.write_config(workers=3)
    srv = ServerHandle(env)
    try:
        for i in range(10):
            srv.wait_task(srv.http("POST", "/tasks", {"kind": "echo", "args": [i]})[1]["id"])
        # HTTP requests are shipped to the pool about once a second per worker.
        wait_for(lambda: sum(v for k, v in scrape(srv)["offload_http_requests_total"].items()
                             if dict(k)["route"] == "/tasks" and dict(k)["method"] == "POST")
                 == 10, 30, what="the 10 POSTs to be counted")
        before = {k: v for k, v in scrape(srv)["offload_tasks_finished_total"].items()}
        workers = [p for p in session_pids(srv.pid) if p != srv.pid and _is_worker(p)]
        assert len(workers) == 3
        os.kill(workers[0], signal.SIGTERM)
        wait_for(lambda: workers[0] not in session_pids(srv.pid)
                 and len([p for p in session_pids(srv.pid)
                          if p != srv.pid and _is_worker(p)]) == 3, 60,
                 what="gunicorn to replace the worker")
        for _ in range(12):  # several scrapes, answered by different workers
            assert scrape(srv)["offload_tasks_finished_total"] == before
    finally:
        srv.stop()


def _is_worker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except OSError:
        return False
    return b"gunicorn" in cmd


def test_hup_grows_executors_without_losing_a_task(server: ServerHandle) -> None:
    def live_executors() -> int:
        rows = server.http("GET", "/queue/stats")[1]["executors"]
        return len([e for e in rows if e["state"] in ("idle", "busy")])

    assert live_executors() == 2
    ids = [server.http("POST", "/tasks", {"kind": "sleep", "args": [0.2]})[1]["id"]
           for _ in range(10)]
    server.env.write_config(executors=4)
    server.signal(signal.SIGHUP)
    ids += [server.http("POST", "/tasks", {"kind": "echo", "args": [i]})[1]["id"]
            for i in range(10)]
    wait_for(lambda: live_executors() == 4, 60, what="4 executors after HUP")
    for task_id in ids:
        assert server.wait_task(task_id, 60)["status"] == "succeeded"
    rows = server.http("GET", "/queue/stats")[1]["executors"]
    assert len(rows) == 4


def test_hup_with_a_bad_edit_keeps_serving_on_the_old_settings(server: ServerHandle) -> None:
    server.env.write_config(executors=-3)
    server.signal(signal.SIGHUP)
    wait_for(lambda: "executors" in server.output() and "reload refused" in server.output(),
             30, what="the reload to be refused in the log")
    status, rec, _ = server.http("POST", "/tasks", {"kind": "echo", "args": ["still here"]})
    assert status == 202
    assert server.wait_task(rec["id"])["status"] == "succeeded"
    rows = server.http("GET", "/queue/stats")[1]["executors"]
    assert len([e for e in rows if e["state"] in ("idle", "busy")]) == 2
    assert server.http("GET", "/readyz")[0] == 200


def test_hup_shrinks_executors_and_records_reload_not_crash(env: Env) -> None:
    env.write_config(executors=4)
    srv = ServerHandle(env)
    try:
        def live() -> int:
            rows = srv.http("GET", "/queue/stats")[1]["executors"]
            return len([e for e in rows if e["state"] in ("idle", "busy")])

        wait_for(lambda: live() == 4, 30)
        running = srv.http("POST", "/tasks", {"kind": "sleep", "args": [1.0]})[1]["id"]
        wait_for(lambda: srv.http("GET", f"/tasks/{running}")[1]["status"] == "running")
        env.write_config(executors=2)
        srv.signal(signal.SIGHUP)
        done = srv.wait_task(running, 60)
        # finished on its old executor: not killed by the reload and run again
        assert (done["status"], done["attempts"]) == ("succeeded", 1)
        wait_for(lambda: len(srv.http("GET", "/queue/stats")[1]["executors"]) == 2, 60,
                 what="2 executors after HUP")
        m = scrape(srv)
        assert value(m, "offload_executor_restarts_total", reason="crash") == 0
        assert value(m, "offload_executor_restarts_total", reason="reload") == 4
        assert srv.http("GET", "/readyz")[1]["executors_wanted"] == 2
    finally:
        srv.stop()


def test_many_http_worker_restarts_keep_counts_exact_and_series_flat(env: Env) -> None:
    """Workers restart every couple of requests (gunicorn max_requests): after
    dozens of real restarts, every request is counted once and the scrape has
    no more series than after the first few (nothing is kept per worker)."""
    env.write_config(workers=2, http_max_requests=2)
    srv = ServerHandle(env)
    try:
        def posts() -> float:
            return sum(v for k, v in scrape(srv)["offload_http_requests_total"].items()
                       if dict(k)["route"] == "/tasks" and dict(k)["method"] == "POST")

        def series() -> int:
            _, text, _ = srv.http("GET", "/metrics")
            return len([ln for ln in text.splitlines() if ln and not ln.startswith("#")])

        sent = 0

        def post_until(workers: int) -> bool:
            nonlocal sent
            status, _, _ = srv.http("POST", "/tasks", {"kind": "echo", "args": [sent]})
            assert status == 202
            sent += 1
            seen.update(p for p in session_pids(srv.pid) if p != srv.pid and _is_worker(p))
            return len(seen) >= workers

        seen: set[int] = set()
        wait_for(lambda: post_until(4), 60, what="the first worker restarts")
        wait_for(lambda: posts() == sent, 30, what="every POST to be counted")
        # The scrapes are requests too, shipped to the pool about once a
        # second: count the series once GET /metrics has its own, or the
        # first scrape's arrival later reads as growth.
        wait_for(lambda: any(dict(k)["route"] == "/metrics" for k in
                             scrape(srv)["offload_http_requests_total"]), 30,
                 what="the scrapes to be counted")
        first = series()
        # The master respawns a worker about once a second: ~20 more restarts.
        wait_for(lambda: post_until(24), 120, interval_s=0.01, what="24 workers to have served")
        wait_for(lambda: posts() == sent, 30, what="every POST to be counted")
        assert series() == first
    finally:
        srv.stop()
