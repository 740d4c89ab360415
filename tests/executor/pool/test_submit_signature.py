"""A real pool refuses calls that do not fit the task's signature before
storing anything, and its executors do not retry a call that cannot bind."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from executor.wire.codec import encode_call
from tests.executor.helpers import pool_error, result
from tests.support.procs import Env, PoolHandle

MODULES = ["tests.support.tasks", "tests.executor.signature_tasks"]


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolHandle]:
    """One pool for the module (each start costs a template and executors)."""
    handle = PoolHandle(Env(tmp_path_factory.mktemp("signature"), task_modules=MODULES))
    try:
        yield handle
    finally:
        handle.stop()


def _spec(kind: str, /, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"kind": kind, "payload": encode_call(args, kwargs)}


def _stored(pool: PoolHandle) -> int:
    return sum(pool.call("stats")["counts"].values())


@pytest.mark.parametrize(("spec", "field", "message"), [
    (_spec("noop", 1), "args", "noop(): too many positional arguments"),
    (_spec("record"), "args",
     "record(): missing a required argument: 'name'"),
    (_spec("record", "a", "b", zz=1), "kwargs",
     "record(): got an unexpected keyword argument 'zz'"),
    (_spec("kwonly", 1), "kwargs", "kwonly(): missing a required argument: 'b'"),
])
def test_calls_that_do_not_bind_are_refused(pool: PoolHandle, spec: dict[str, Any], field: str,
                                            message: str) -> None:
    before = _stored(pool)
    err = pool_error(pool, "submit", {"tasks": [spec]})
    assert (err.code, err.field) == ("invalid", f"tasks[0].{field}")
    assert err.message.startswith(message + "; the task's signature is "), err.message
    assert _stored(pool) == before


def test_calls_that_bind_are_stored_and_run(pool: PoolHandle) -> None:
    specs = [_spec("record", "accepted.log", "v"),            # a default left out
             _spec("sleep", seconds=0),                       # positional parameter by keyword
             _spec("echo", 1, "two", three=3.0),              # *args, **kwargs
             _spec("mixed", 1, 2, 3, flag=True, other=4),     # both, after a required one
             _spec("kwonly", 1, b=2),
             _spec("posonly", 1, b=3),
             _spec("unreadable", 1, 2)]                       # not checked
    ids = [t["id"] for t in pool.call("submit", {"tasks": specs})["tasks"]]
    records = [pool.wait(i) for i in ids]
    assert [r["status"] for r in records] == ["succeeded"] * len(specs), records
    assert result(records[3]) == {"a": 1, "rest": [2, 3], "flag": True, "extra": {"other": 4}}
    assert result(records[4]) == [1, 2, 1]


def test_a_batch_is_refused_whole_naming_the_bad_call(pool: PoolHandle) -> None:
    before = _stored(pool)
    err = pool_error(pool, "submit", {"tasks": [_spec("noop"), _spec("noop", 1), _spec("noop")]})
    assert (err.code, err.field) == ("invalid", "tasks[1].args")
    assert _stored(pool) == before


def test_a_call_that_cannot_bind_fails_at_once_in_the_executor(pool: PoolHandle) -> None:
    """As a task stored before a deploy changed its function would: the pool does
    not check calls with a ``ref`` (add_task did), so this one reaches the executor."""
    spec = {**_spec("flaky"), "ref": "tests.support.tasks:flaky"}  # flaky has max_retries=5
    task_id = pool.call("submit", {"tasks": [spec]})["tasks"][0]["id"]
    rec = pool.wait(task_id)
    assert (rec["status"], rec["attempts"]) == ("failed", 1), rec
    assert rec["error"]["reason"] == "error"
    assert rec["error"]["message"].startswith(
        "TypeError: flaky() missing 2 required positional arguments: 'name' and 'succeed_on'")
    assert "not retried" in rec["error"]["message"]
    assert "Traceback" in rec["error"]["traceback"]


def test_a_type_error_raised_by_the_task_itself_is_retried(pool: PoolHandle) -> None:
    rec = pool.wait(pool.submit("type_error_inside", 1))  # max_retries=1
    assert (rec["status"], rec["attempts"]) == ("failed", 2), rec
    assert rec["error"]["message"] == "TypeError: the body cannot use 1"


def test_a_type_error_from_a_call_python_binds_is_retried(pool: PoolHandle) -> None:
    # Signature.bind refuses a=1 into **kw of f(a=0, /, **kw); CPython accepts
    # it: the body's TypeError is the task's own, so it is retried.
    rec = pool.wait(pool.submit("posonly_kwargs_type_error", kwargs={"a": 1}))
    assert (rec["status"], rec["attempts"]) == ("failed", 2), rec
    assert rec["error"]["message"] == "TypeError: the body cannot use {'a': 1}"
