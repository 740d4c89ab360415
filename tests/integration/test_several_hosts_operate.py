"""Operating hosts that share a PostgreSQL queue: /metrics and HUP reload.

Real gunicorn servers (``tests.support.hosts``) on one fresh database of
the run's private PostgreSQL server. What each host's /metrics says about
the shared queue and about itself, and a live resize on ``kill -HUP`` of one
host while the other keeps serving.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.support.hosts import Host, hosts, query
from tests.support.procs import ServerHandle, wait_for
from tests.support.scrape import scrape, value

pytestmark = pytest.mark.slow

LATER = 3600.0  # a delay that keeps a task pending for the whole test


def _submit(server: ServerHandle, body: dict[str, object]) -> str:
    status, rec, _ = server.http("POST", "/tasks", body)
    assert status == 202, rec
    return str(rec["id"])


def _live_executors(host: Host) -> int:
    rows = host.up.http("GET", "/queue/stats")[1]["executors"]
    return len([e for e in rows if e["state"] in ("idle", "busy")])


def test_each_host_reports_the_shared_queue_depth_and_its_own_counters(
        tmp_path: Path, postgres_url: str) -> None:
    with hosts(2, tmp_path, postgres_url) as (a, b):
        for _ in range(3):
            _submit(a.up, {"kind": "noop", "delay_s": LATER})
        for _ in range(2):
            _submit(b.up, {"kind": "noop", "delay_s": LATER})
        ran = [_submit(a.up, {"kind": "echo", "args": [i]}) for i in range(4)]
        for task_id in ran:
            assert b.up.wait_task(task_id, 60)["status"] == "succeeded"
        # The queue gauges are the shared queue's: the same on both hosts.
        for host in (a, b):
            m = scrape(host.up)
            assert value(m, "offload_queue_depth", status="pending") == 5, host.name
            assert value(m, "offload_queue_depth", status="succeeded") == 4, host.name
            assert value(m, "offload_pool_up") == 1
        # The counters are each host's own: what its pool accepted.
        ma, mb = scrape(a.up), scrape(b.up)
        sub = "offload_tasks_submitted_total"
        assert (value(ma, sub, kind="noop"), value(mb, sub, kind="noop")) == (3, 2)
        assert (value(ma, sub, kind="echo"), value(mb, sub, kind="echo")) == (4, 0)
        finished = sum(value(m, "offload_tasks_finished_total", kind="echo",
                             outcome="succeeded") for m in (ma, mb))
        assert finished == 4  # each run counted once, by the host that ran it


def test_hup_resizes_one_host_while_the_other_serves_and_loses_nothing(
        tmp_path: Path, postgres_url: str) -> None:
    with hosts(2, tmp_path, postgres_url) as (a, b):
        assert _live_executors(a) == 2
        ids = [_submit((a, b)[i % 2].up, {"kind": "sleep", "args": [0.1]}) for i in range(10)]
        a.env.write_config(executors=3)
        a.up.signal(signal.SIGHUP)
        ids += [_submit((a, b)[i % 2].up, {"kind": "echo", "args": [i]}) for i in range(10)]
        wait_for(lambda: _live_executors(a) == 3, 60, what="3 executors on host a after HUP")
        assert _live_executors(b) == 2
        ids += [_submit(a.up, {"kind": "echo", "args": [i]}) for i in range(10, 15)]
        for task_id in ids:
            assert b.up.wait_task(task_id, 60)["status"] == "succeeded"
        assert query(postgres_url, "SELECT count(*) FROM offload_tasks WHERE status ="
                                   " 'succeeded'") == [(len(ids),)]


def test_hup_that_changes_the_store_is_refused_and_keeps_serving(
        tmp_path: Path, postgres_url: str) -> None:
    with hosts(1, tmp_path, postgres_url) as (a,):
        other = postgres_url.replace("@/", "@/other_", 1)  # another database, same server
        a.env.write_config(store_url=other, executors=3)
        a.up.signal(signal.SIGHUP)
        wait_for(lambda: a.up.output().count("reload refused") >= 1, 30,
                 what="the reload to be refused in the log")
        assert "'store_url'" in a.up.output()
        task_id = _submit(a.up, {"kind": "echo", "args": ["still here"]})
        assert a.up.wait_task(task_id, 60)["status"] == "succeeded"
        assert query(postgres_url, "SELECT count(*) FROM offload_tasks") == [(1,)]
        assert _live_executors(a) == 2  # nothing of the refused edit applied
