"""Real gunicorn: a submitted call that does not fit the task's signature is
refused with 422 naming ``args``/``kwargs`` (``tasks[i].args`` in a batch),
before anything is stored; calls that fit are accepted and run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from server import Client, InvalidRequest
from tests.support.procs import Env, ServerHandle, running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """One server for the module (gunicorn, a pool and executors per start)."""
    env = Env(tmp_path_factory.mktemp("http-signature"))
    with running(lambda: ServerHandle(env)) as handle:
        yield handle


def _stored(server: ServerHandle) -> int:
    status, stats, _ = server.http("GET", "/queue/stats")
    assert status == 200
    return sum(stats["counts"].values())


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"kind": "noop", "args": [1]}, "args",
     "noop(): too many positional arguments"),
    ({"kind": "record"}, "args",
     "record(): missing a required argument: 'name'"),
    ({"kind": "record", "args": ["a", "b"], "kwargs": {"zz": 1}}, "kwargs",
     "record(): got an unexpected keyword argument 'zz'"),
    ({"kind": "record", "args": ["a", "b"], "kwargs": {"value": "c"}}, "kwargs",
     "record(): multiple values for argument 'value'"),
    ({"kind": "sleep", "args": [1, 2, 3]}, "args",
     "sleep(): too many positional arguments"),
])
def test_a_call_that_does_not_bind_is_422(server: ServerHandle, body: dict[str, Any],
                                          field: str, message: str) -> None:
    before = _stored(server)
    status, answer, _ = server.http("POST", "/tasks", body)
    assert status == 422, answer
    error = answer["error"]
    assert (error["code"], error["field"]) == ("invalid", field)
    assert error["message"].startswith(message + "; the task's signature is "), error
    assert _stored(server) == before, "nothing may be stored"


def test_calls_that_bind_are_accepted_and_run(server: ServerHandle) -> None:
    bodies = [{"kind": "noop"},
              {"kind": "record", "args": ["http.log", "v"]},                  # default left out
              {"kind": "record", "args": ["http.log"], "kwargs": {"value": "w", "fail": False}},
              {"kind": "sleep", "kwargs": {"seconds": 0}},
              {"kind": "echo", "args": [1, 2, 3], "kwargs": {"kind": "x", "args": 4}}]
    ids = []
    for body in bodies:
        status, rec, _ = server.http("POST", "/tasks", body)
        assert status == 202, rec
        ids.append(rec["id"])
    done = [server.wait_task(i) for i in ids]
    assert [d["status"] for d in done] == ["succeeded"] * len(bodies), done
    assert done[4]["result"] == {"args": [1, 2, 3], "kwargs": {"kind": "x", "args": 4}}


def test_a_batch_is_refused_whole_naming_the_item(server: ServerHandle) -> None:
    before = _stored(server)
    status, answer, _ = server.http("POST", "/tasks/batch", {"tasks": [
        {"kind": "noop"}, {"kind": "noop", "args": [1]}, {"kind": "noop"}]})
    assert status == 422, answer
    assert (answer["error"]["code"], answer["error"]["field"]) == ("invalid", "tasks[1].args")
    assert _stored(server) == before, "nothing may be stored"


def test_the_client_raises_invalid_request_naming_the_field(server: ServerHandle) -> None:
    with Client(server.env.url) as client:
        with pytest.raises(InvalidRequest) as info:
            client.submit("record", "client.log", "v", colour="red")
        assert (info.value.status, info.value.code, info.value.field) == (422, "invalid",
                                                                          "kwargs")
        assert "record(): got an unexpected keyword argument 'colour'" in str(info.value)
        with pytest.raises(InvalidRequest) as batch:
            client.submit_many([{"kind": "noop"}, {"kind": "record", "args": ["x"]}])
        assert batch.value.field == "tasks[1].args"
