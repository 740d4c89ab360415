"""offload's ``BackgroundTasks`` in real FastAPI and Starlette apps, under real gunicorn.

One server for the module (``tests.support.webapps``, 3 executors, so calls
that were not ordered would run side by side). Every test writes its own
trace file; a trace line is ``"<label> <task id>"``, so the file gives the
order in which calls ran and their ids.
"""

from __future__ import annotations

import itertools
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from executor.store import open_store
from tests.support.procs import (
    Env,
    ServerHandle,
    kill_session,
    pid_alive,
    running,
    session_pids,
    wait_for,
)

STEP = "tests.support.webapps.step"
PREFIXES = ["/fa/steps", "/st/steps"]  # FastAPI (OffloadTasks) and Starlette (background=)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    env = Env(tmp_path_factory.mktemp("webapps"), app="tests.support.webapps:fastapi_app",
              executors=3, task_modules=["tests.support.tasks", "tests.support.webapps"])
    with running(lambda: ServerHandle(env)) as server:
        yield server


def new_trace() -> str:
    return f"trace-{uuid.uuid4().hex[:12]}"


def trace_lines(web: ServerHandle, trace: str, n: int) -> list[tuple[str, str]]:
    """Wait until the trace has ``n`` lines; return them as (label, task id)."""
    lines = wait_for(lambda: (got := web.env.trace(trace)) and len(got) >= n and got,
                     30, what=f"{n} lines in {trace}")
    return [(label, task_id) for label, task_id in (line.split(" ", 1) for line in lines)]


def record(web: ServerHandle, task_id: str) -> dict[str, Any]:
    status, rec, _ = web.http("GET", f"/tasks/{task_id}")
    assert status == 200, rec
    return rec


def post(web: ServerHandle, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer, _ = web.http("POST", path, body)
    assert status == 201, answer
    return answer


@pytest.mark.parametrize("path", PREFIXES)
def test_the_response_arrives_before_a_slow_call_finishes(web: ServerHandle, path: str) -> None:
    trace = new_trace()
    release = web.env.trace_dir / f"{trace}.release"
    post(web, path, {"steps": [["blocked", trace, "slow", str(release)]]})
    # The call cannot finish before `release` exists, and it is only created
    # now, after the response arrived: the response did not wait for the call.
    [(label, task_id)] = trace_lines(web, trace, 1)
    assert label == "slow-start"
    assert record(web, task_id)["status"] == "running"
    release.touch()
    done = web.wait_task(task_id)
    assert done["status"] == "succeeded" and done["result"] == "slow"
    assert [lbl for lbl, _ in trace_lines(web, trace, 2)] == ["slow-start", "slow-end"]


@pytest.mark.parametrize("path", PREFIXES)
def test_calls_run_in_the_order_added_each_with_its_own_record(web: ServerHandle,
                                                              path: str) -> None:
    trace = new_trace()
    # The first call is the slowest: unordered, the others would overtake it.
    post(web, path, {"steps": [["step", trace, "a", 0.3], ["async_step", trace, "b"],
                               ["step", trace, "c", 0.1], ["step", trace, "d"]]})
    lines = trace_lines(web, trace, 4)
    assert [label for label, _ in lines] == ["a", "b", "c", "d"]
    ids = [task_id for _, task_id in lines]
    assert len(set(ids)) == 4
    for (label, task_id), kind in zip(lines, [STEP, "tests.support.webapps.async_step",
                                              STEP, STEP], strict=True):
        rec = web.wait_task(task_id)
        assert (rec["kind"], rec["status"], rec["attempts"], rec["result"]) == (
            kind, "succeeded", 1, label)
    recs = [record(web, i) for i in ids]
    # Each started only once the one before it had finished.
    for before, after in itertools.pairwise(recs):
        assert before["finished_at"] <= after["started_at"]


@pytest.mark.parametrize("path", PREFIXES)
def test_a_failing_call_does_not_stop_the_next_and_its_retries_come_first(
        web: ServerHandle, path: str) -> None:
    trace = new_trace()
    post(web, path, {"steps": [["step", trace, "a"], ["fail", trace, "b"],
                               ["step", trace, "c"]]})
    lines = wait_for(lambda: (got := web.env.trace(trace)) and got[-1].startswith("c ") and got,
                     30, what="the third call")
    labels = [line.split()[0] for line in lines]
    failed = record(web, lines[1].split()[1])
    assert failed["status"] == "failed" and failed["error"]["reason"] == "error"
    assert "b fails on purpose" in failed["error"]["message"]
    # every attempt of b (the retries included) ran before c started
    assert labels == ["a"] + ["b"] * (failed["max_retries"] + 1) + ["c"]
    assert failed["attempts"] == failed["max_retries"] + 1
    assert web.wait_task(lines[-1].split()[1])["status"] == "succeeded"


def test_a_retried_call_is_waited_for(web: ServerHandle) -> None:
    trace = new_trace()
    post(web, "/fa/steps", {"steps": [["flaky", trace, "b", 3], ["step", trace, "c"]]})
    lines = trace_lines(web, trace, 4)
    assert [label for label, _ in lines] == ["b", "b", "b", "c"]
    flaky = record(web, lines[0][1])
    assert (flaky["status"], flaky["attempts"], flaky["result"]) == ("succeeded", 3, 3)


def test_a_crashing_call_is_recorded_and_the_next_still_runs(web: ServerHandle) -> None:
    trace = new_trace()
    # Flushed inside the route: the ids come back in the response, every call durable.
    ids = post(web, "/fa/steps/explicit", {"steps": [["step", trace, "a"], ["segfault"],
                                                     ["step", trace, "c"]]})["ids"]
    assert len(ids) == 3
    crashed = web.wait_task(ids[1])
    assert (crashed["kind"], crashed["status"], crashed["error"]["reason"]) == (
        "segfault", "failed", "crash")
    assert "SIGSEGV" in crashed["error"]["message"]
    assert web.wait_task(ids[2])["status"] == "succeeded"
    assert trace_lines(web, trace, 2) == [("a", ids[0]), ("c", ids[2])]
    assert crashed["started_at"] >= record(web, ids[0])["finished_at"]
    assert record(web, ids[2])["started_at"] >= crashed["finished_at"]


def test_a_route_returning_its_own_response_background_loses_no_call(
        web: ServerHandle) -> None:
    trace = new_trace()
    status, body, _ = web.http("POST", "/fa/pitfall", {
        "trace": trace, "steps": [["step", trace, "a"], ["step", trace, "b"]]})
    assert (status, body) == (201, {"added": 2})
    lines = wait_for(lambda: (got := web.env.trace(trace)) and len(got) >= 3 and got,
                     30, what="the response's task and both offload calls")
    labels = [line.split()[0] for line in lines]
    assert labels == ["response-background", "a", "b"]
    # The pitfall is real in the installed FastAPI (fastapi/fastapi#11215): its
    # own injected BackgroundTasks was dropped. (offload's calls are submitted
    # after the response's background task ran, so it would be in the trace.)
    assert "fastapi-injected" not in labels


def test_a_route_that_raises_submits_nothing(web: ServerHandle) -> None:
    trace = new_trace()
    status, _, _ = web.http("POST", "/fa/raises", {"steps": [["unwanted", trace, "x"]]})
    assert status == 409
    # The dependency's exit code ran before the 409 was sent: had it submitted
    # the call, the call would be in the store by now.
    status, page, _ = web.http("GET", "/tasks?kind=tests.support.webapps.unwanted_step")
    assert status == 200 and page["tasks"] == []


def test_every_refusal_comes_with_its_reason_in_a_real_worker(web: ServerHandle) -> None:
    status, messages, _ = web.http("POST", "/fa/refusals")
    assert status == 200, messages
    expected = {
        "lambda": "lambdas cannot be imported by an executor",
        "closure": "nested functions and closures cannot be imported",
        "bound method": "bound methods cannot be re-created in an executor",
        "not importable": "tests.support.webapps:no_such_function cannot be imported",
        "unencodable": "argument 'label' cannot be sent to an executor",
        "signature": "got an unexpected keyword argument 'colour'",
    }
    assert set(messages) == set(expected)
    for case, reason in expected.items():
        assert messages[case].startswith("add_task(") and reason in messages[case], (case,
                                                                                     messages)


def test_a_single_starlette_style_background_task(web: ServerHandle) -> None:
    trace = new_trace()
    post(web, "/st/task", {"trace": trace, "label": "solo"})
    [(label, task_id)] = trace_lines(web, trace, 1)
    assert label == "solo"
    assert web.wait_task(task_id)["kind"] == STEP


def test_offload_routes_and_the_app_are_served_side_by_side(web: ServerHandle) -> None:
    assert web.http("GET", "/healthz")[0] == 200
    assert web.http("GET", "/queue/stats")[0] == 200
    assert web.http("GET", "/fa/nothing-here")[0] == 404



@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_calls_handed_off_while_the_pool_is_frozen_are_stored_as_the_worker_stops(
        tmp_path: Path, stop: signal.Signals) -> None:
    """The hand-off after the response never waits for the pool; a worker that
    stops first stores what its outbox still holds, on a quick stop (Ctrl-C:
    SIGINT to every process, SIGQUIT from the master) too."""
    env = Env(tmp_path, app="tests.support.webapps:fastapi_app", workers=1, executors=1,
              task_modules=["tests.support.tasks", "tests.support.webapps"])
    trace = new_trace()
    with running(lambda: ServerHandle(env)) as server:
        pool = server.pool_pid()
        assert pool is not None
        os.kill(pool, signal.SIGSTOP)
        try:
            for n, path in enumerate(PREFIXES * 2):  # answered while the pool cannot store
                post(server, path, {"steps": [["step", trace, f"call{n}"]]})
            if stop == signal.SIGINT:  # as a terminal's Ctrl-C: the whole process group
                for pid in session_pids(server.pid):
                    os.kill(pid, signal.SIGINT)
            else:
                server.signal(stop)  # the worker drains its outbox as it stops
            # The pool stays frozen until the worker is stopping (its calls
            # still in its outbox), so they are stored on the way out.
            wait_for(lambda: "Worker shutting down..." in server.output(), 30,
                     what="the HTTP worker to start shutting down")
        finally:
            os.kill(pool, signal.SIGCONT)
        server.popen.wait(60)
        log = server.output()
    assert "were not stored" not in log and "not stored: they are lost" not in log
    if stop == signal.SIGINT:
        assert "4 background call(s) not stored yet: stopping gracefully" in log
    with running(lambda: ServerHandle(env)) as server:  # same store: the calls run now
        lines = trace_lines(server, trace, 4)
        status, page, _ = server.http("GET", f"/tasks?kind={STEP}&limit=100")
    assert sorted(label for label, _ in lines) == ["call0", "call1", "call2", "call3"]
    assert status == 200 and len(page["tasks"]) == 4  # each stored once


def test_stored_calls_survive_kill_9_of_every_process_and_run_in_order_after_a_restart(
        tmp_path: Path) -> None:
    """What Starlette's in-process tasks cannot do: a machine-wide crash (every
    offload process SIGKILLed, the running call's executor included) loses no
    call that was stored; after a restart on the same store the interrupted
    call runs again, its lost attempt counted, and its group's order holds."""
    env = Env(tmp_path, app="tests.support.webapps:fastapi_app", workers=1, executors=1,
              task_modules=["tests.support.tasks", "tests.support.webapps"])
    trace, release = new_trace(), tmp_path / "release"
    with running(lambda: ServerHandle(env)) as server:
        ids = post(server, "/fa/steps/explicit", {"steps": [
            ["blocked", trace, "a", str(release)], ["step", trace, "b"],
            ["step", trace, "c"]]})["ids"]
        post(server, "/st/steps", {"steps": [["async_step", trace, "d"]]})  # fire and forget
        trace_lines(server, trace, 1)  # "a-start": the first call is running
        # d was stored by the worker's outbox (nothing waited for it): it is
        # listed, and pending behind a in the single executor.
        wait_for(lambda: server.http("GET", "/tasks?kind=tests.support.webapps.async_step"
                                     )[1]["tasks"], 30, what="the fire-and-forget call stored")
        assert record(server, ids[0])["status"] == "running"
        store = open_store(env.settings["store_url"])  # read beside the pool (WAL)
        try:  # its start reaches the store within START_WRITE_S
            wait_for(lambda: store.get(ids[0]).started_at is not None,  # type: ignore[union-attr]
                     10, what="the first call's start in the store")
        finally:
            store.close()
        processes = session_pids(server.pid)
        assert len(processes) >= 6  # master, worker, keeper, pool, template, executor
        kill_session(server.pid)
        wait_for(lambda: not any(pid_alive(pid) for pid in processes), 30,
                 what="every offload process to die")
    release.touch()
    with running(lambda: ServerHandle(env)) as server:
        lines = trace_lines(server, trace, 6)
        first = [server.wait_task(task_id) for task_id in ids]
        status, page, _ = server.http("GET", "/tasks?kind=tests.support.webapps.async_step")
    labels = [label for label, _ in lines]
    assert [label for label in labels if label != "d"] == ["a-start", "a-start", "a-end", "b",
                                                          "c"]
    assert "d" in labels and status == 200 and len(page["tasks"]) == 1
    assert page["tasks"][0]["status"] == "succeeded"
    assert [rec["status"] for rec in first] == ["succeeded"] * 3
    assert first[0]["attempts"] == 2  # the attempt the crash interrupted counts
    assert first[1]["started_at"] >= first[0]["finished_at"]
    assert first[2]["started_at"] >= first[1]["finished_at"]
