"""``BackgroundTasks`` without a real pool: what ``add_task`` refuses and why,
what it sends, the shared client, and the FastAPI dependency over a fake pool."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import re
import types
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import starlette.background
import starlette.requests
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse

from config.settings import Settings
from executor import BackgroundTask, BackgroundTasks, PoolError, PoolUnavailable, task
from executor.client import shared as shared_mod
from executor.client.shared import drain_background, queued_background, shared_client
from executor.wire.codec import decode_call
from server import create_app
from server.fastapi import OffloadTasks, offload_tasks
from tests.server.fakepool import FakePool
from tests.support import tasks as support_tasks
from tests.support import webapps

MODULE = __name__


def helper(x: int) -> int:
    return x


def posonly_then_kwargs(a: int = 1, /, **kw: Any) -> None:
    """``a=2`` by keyword goes to ``**kw`` in CPython; ``Signature.bind`` refuses it."""


async def async_helper(x: int) -> int:
    return x


def gen_helper() -> Iterator[int]:
    yield 1


class Mailer:
    def send(self, to: str) -> None: ...

    @staticmethod
    def static_send(to: str) -> None: ...

    @classmethod
    def class_send(cls, to: str) -> None: ...


class Unencodable:
    pass


@dataclasses.dataclass
class Point:
    x: int
    y: int


def specs(tasks: BackgroundTasks) -> list[dict[str, Any]]:
    return [tasks._spec(seq, call) for seq, call in tasks._pending]


# -- refusals ------------------------------------------------------------------

def refused(fn: Any, *args: Any, **kwargs: Any) -> str:
    tasks = BackgroundTasks()
    with pytest.raises(TypeError) as info:
        tasks.add_task(fn, *args, **kwargs)
    assert tasks.pending_count() == 0 and len(tasks) == 0
    return str(info.value)


def test_lambda_is_refused() -> None:
    message = refused(lambda: None)
    assert "lambdas cannot be imported" in message and "module level" in message


def test_closure_is_refused() -> None:
    n = 3

    def inner() -> int:
        return n

    message = refused(inner)
    assert "closures" in message and "pass what it captured as arguments" in message


def test_bound_method_of_an_instance_is_refused() -> None:
    message = refused(Mailer().send, "a@b.c")
    assert "bound methods cannot be re-created in an executor" in message
    assert "use a module-level function and pass the object's id" in message
    assert "bound methods" in refused([].append, 1)


def test_function_of_main_is_refused() -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec("def job():\n    pass\n", namespace)
    message = refused(namespace["job"])
    assert "__main__" in message and "move it into an importable module" in message


def test_function_not_importable_under_its_name_is_refused() -> None:
    copy = types.FunctionType(helper.__code__, globals(), "helper")
    assert "gives another object" in refused(copy, 1)
    ghost = types.FunctionType(helper.__code__, globals(), "ghost")
    ghost.__qualname__ = "ghost"
    assert f"{MODULE}:ghost cannot be imported" in refused(ghost, 1)


def test_other_callables_are_refused() -> None:
    assert "partial" in refused(functools.partial(helper, 1))
    assert "a class is not a function" in refused(Mailer)
    assert "not functions" in refused(Mailer())  # not even callable
    assert "generator functions" in refused(gen_helper)


@task(timeout_s=1e-9)
def too_short() -> None:
    pass


def test_a_task_whose_options_are_out_of_the_settings_bounds_is_refused() -> None:
    # default_timeout_s cannot go under 0.001 s: neither can a kind's timeout_s.
    assert "@task(timeout_s=1e-09): must be a number of seconds from 0.001" in refused(
        too_short)


def test_unencodable_argument_is_refused_naming_it() -> None:
    message = refused(support_tasks.record, "trace", Unencodable())
    assert "argument 'value'" in message and "Unencodable" in message
    message = refused(support_tasks.record, "trace", "v", fail=Unencodable())
    assert "argument 'fail'" in message
    message = refused(support_tasks.record, "trace", {(1, 2): "a tuple key"})
    assert "argument 'value'" in message and "would not decode" in message


def test_arguments_too_large_for_a_frame_are_refused_at_add_task() -> None:
    tasks = BackgroundTasks(settings=Settings(max_frame_bytes=256 * 1024,
                                              max_result_bytes=1024))
    tasks.add_task(support_tasks.record, "trace", "v" * 100_000)  # fits in half a frame
    with pytest.raises(TypeError, match=r"arguments are \d+ bytes encoded, over the \d+ one "
                                        r"call may carry \(half of max_frame_bytes\)"):
        tasks.add_task(support_tasks.record, "trace", "v" * 200_000)
    assert len(tasks) == 1


def test_a_call_python_accepts_is_accepted_where_signature_bind_is_stricter() -> None:
    tasks = BackgroundTasks()
    tasks.add_task(posonly_then_kwargs, a=2)  # the same check as the pool's (CallCheck)
    assert len(tasks) == 1


def test_arguments_that_do_not_fit_the_signature_are_refused() -> None:
    assert "missing a required argument: 'value'" in refused(support_tasks.record, "trace")
    assert "unexpected keyword argument 'colour'" in refused(helper, 1, colour="red")


def test_an_accepted_call_shape_does_not_let_another_through() -> None:
    # The signature check remembers the shapes it accepted: each new shape is
    # still checked, however many calls of other shapes came before.
    tasks = BackgroundTasks()
    for _ in range(3):
        tasks.add_task(support_tasks.record, "trace", "v")
    assert "missing a required argument" in refused(support_tasks.record, "trace")
    assert "too many positional arguments" in refused(support_tasks.record, "t", "v", 1, 2)
    tasks.add_task(support_tasks.record, "trace", value="v")
    assert "unexpected keyword argument 'colour'" in refused(
        support_tasks.record, "trace", "v", colour="red")
    assert len(tasks) == 4


def test_background_task_checks_when_made() -> None:
    with pytest.raises(TypeError, match="lambdas"):
        BackgroundTask(lambda: None)
    with pytest.raises(TypeError, match="BackgroundTask"):
        BackgroundTasks([object()])  # type: ignore[list-item]


# -- what is sent --------------------------------------------------------------

def test_kinds_refs_groups_and_sequence() -> None:
    tasks = BackgroundTasks()
    tasks.add_task(helper, 1)
    tasks.add_task(async_helper, x=2)
    tasks.add_task(support_tasks.record, "t", "v")
    tasks.add_task(Mailer.static_send, "a@b.c")
    tasks.add_task(Mailer.class_send, "a@b.c")
    tasks.add_task(helper, Point(1, 2))
    sent = specs(tasks)
    assert [s["kind"] for s in sent] == [
        f"{MODULE}.helper", f"{MODULE}.async_helper", "record", f"{MODULE}.Mailer.static_send",
        f"{MODULE}.Mailer.class_send", f"{MODULE}.helper"]
    assert [s["ref"] for s in sent][:3] == [f"{MODULE}:helper", f"{MODULE}:async_helper",
                                            "tests.support.tasks:record"]
    assert [s["seq"] for s in sent] == list(range(6))
    assert {s["group_id"] for s in sent} == {tasks.group_id}
    assert len({s["idempotency_key"] for s in sent}) == 6
    # @task options travel with the call; other calls take the pool's defaults
    assert sent[2]["max_retries"] == 0 and "max_retries" not in sent[0]
    assert decode_call(sent[1]["payload"]) == ([], {"x": 2})
    assert decode_call(sent[5]["payload"]) == ([{"x": 1, "y": 2}], {})
    # an async def function may share an executor: the pool, which cannot
    # import it, is told (0: the async_concurrency setting)
    assert sent[1]["concurrency"] == 0 and "concurrency" not in sent[0]
    assert len(tasks) == tasks.pending_count() == 6
    assert BackgroundTasks().group_id != tasks.group_id


def test_starlette_and_offload_background_task_objects_are_accepted() -> None:
    tasks = BackgroundTasks([BackgroundTask(helper, 1),
                             starlette.background.BackgroundTask(webapps.step, "t", "a")])
    assert [s["kind"] for s in specs(tasks)] == [f"{MODULE}.helper",
                                                 "tests.support.webapps.step"]
    assert [s["seq"] for s in specs(tasks)] == [0, 1]


# -- submitting ----------------------------------------------------------------

@pytest.fixture
def fake(run_dir: str) -> Iterator[FakePool]:
    pool = FakePool(os.path.join(run_dir, "pool.sock")).start()
    # the fake pool knows kinds by name only
    pool.kinds.update({f"{MODULE}.helper": {"max_retries": 3, "timeout_s": 300.0},
                       "tests.support.webapps.step": {"max_retries": 3, "timeout_s": 300.0},
                       "tests.support.webapps.unwanted_step": {"max_retries": 3,
                                                               "timeout_s": 300.0}})
    yield pool
    pool.stop()


def test_calls_are_handed_off_at_once_and_stored_in_order(run_dir: str,
                                                          fake: FakePool) -> None:
    settings = Settings(run_dir=run_dir)

    async def go() -> tuple[BackgroundTasks, int, int]:
        tasks = BackgroundTasks(settings=settings)
        await tasks()  # nothing pending: nothing sent
        tasks.add_task(helper, 1)
        tasks.add_task(helper, 2)
        await tasks()  # returns before the pool has them
        handed_off = tasks.pending_count()
        tasks.add_task(helper, 3)
        ids = await tasks.submit()  # waits until stored
        assert ids == tasks.task_ids
        return tasks, handed_off, len(fake.tasks)

    tasks, handed_off, stored = asyncio.run(go())
    assert handed_off == 2 and stored == 3
    submits = [args["tasks"] for op, args in fake.calls if op == "submit"]
    # handed off in the same loop turn: one request for all three
    assert [len(s) for s in submits] == [3]
    assert [s["seq"] for batch in submits for s in batch] == [0, 1, 2]
    assert tasks.pending_count() == 0 and len(tasks) == 3
    assert tasks.task_ids == list(fake.tasks)


def test_a_refused_call_is_dropped_and_submit_raises(
        run_dir: str, fake: FakePool, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(run_dir=run_dir)
    fake.errors["submit"] = {"code": "invalid", "message": "not now"}

    async def go() -> BackgroundTasks:
        tasks = BackgroundTasks(settings=settings)
        tasks.add_task(helper, 1)
        with pytest.raises(PoolError, match="not now"):
            await tasks.submit()
        assert tasks.pending_count() == 0
        tasks.add_task(helper, 2)
        await tasks.submit()
        return tasks

    tasks = asyncio.run(go())
    assert tasks.task_ids == list(fake.tasks) and len(fake.tasks) == 1
    assert "refused 1 background call(s) of tests.executor.client.test_background_unit.helper" in (
        caplog.text)


def test_resubmitting_the_same_calls_is_deduplicated(run_dir: str, fake: FakePool) -> None:
    settings = Settings(run_dir=run_dir)

    async def go() -> list[str]:
        tasks = BackgroundTasks(settings=settings)
        tasks.add_task(helper, 1)
        pending = list(tasks._pending)
        await tasks.submit()
        tasks._pending = pending  # as if the first reply had been lost
        return await tasks.submit()

    ids = asyncio.run(go())
    assert len(ids) == 2 and ids[0] == ids[1] and len(fake.tasks) == 1


def test_a_single_background_task_hands_itself_off(run_dir: str, fake: FakePool,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_mod, "_default", Settings(run_dir=run_dir))
    task = BackgroundTask(helper, 7)
    other = BackgroundTask(helper, 8)

    async def go() -> str:
        await task()
        assert await drain_background(5) == 0
        return await other.submit()

    other_id = asyncio.run(go())
    assert task.task_id is not None and list(fake.tasks) == [task.task_id, other_id]
    assert decode_call(fake.payloads[task.task_id]) == ([7], {})


def test_unreachable_pool_submit_raises_and_keeps_the_calls(run_dir: str) -> None:
    settings = Settings(run_dir=run_dir)  # nobody listens there

    async def go() -> tuple[int, int]:
        tasks = BackgroundTasks(settings=settings)
        tasks.add_task(helper, 1)
        with pytest.raises(PoolUnavailable, match="stay queued"):
            await tasks.submit(timeout_s=0.2)
        return tasks.pending_count(), await drain_background(0.1)

    assert asyncio.run(go()) == (1, 1)
    shared_mod._outboxes.clear()  # that loop is gone; nothing to report at exit


# -- the shared client ---------------------------------------------------------

def test_one_client_per_loop_and_pool_shared_with_the_http_worker(run_dir: str) -> None:
    settings = Settings(run_dir=run_dir)
    other = Settings(run_dir=run_dir + "-other")
    app: Any = create_app(settings)

    async def go() -> tuple[Any, ...]:
        return (shared_client(settings), shared_client(settings), shared_client(other),
                app.link.client())

    a, b, c, linked = asyncio.run(go())
    assert a is b is linked and c is not a
    assert asyncio.run(go())[0] is not a  # another loop, another client
    with pytest.raises(RuntimeError):
        shared_client(settings)  # no running loop


def _in_child(fn: Any) -> str:
    """``fn()`` run in a forked child; its string result."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, str(fn()).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        with os.fdopen(read, "rb") as f:
            return f.read().decode()
    finally:
        os.waitpid(pid, 0)


def test_group_ids_are_unique_time_ordered_and_differ_in_a_forked_child() -> None:
    ids = [BackgroundTasks().group_id for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), ids[:3]
    assert ids == sorted(ids)  # same process: millisecond, tag, then counter
    child = _in_child(lambda: BackgroundTasks().group_id)
    # gunicorn forks its workers: a child draws its own tag, so its ids
    # cannot repeat the parent's (or a sibling's) counter values.
    assert len(child) == 32 and child[12:24] != ids[-1][12:24]


def test_a_forked_child_does_not_use_its_parents_client(run_dir: str) -> None:
    settings = Settings(run_dir=run_dir)

    async def child_sees() -> str:
        shared_client(settings)  # the parent's, on this loop
        return _in_child(lambda: len(shared_mod._outboxes))

    assert asyncio.run(child_sees()) == "0"


# -- the FastAPI dependency, over the fake pool ---------------------------------

@pytest.fixture
def fastapi_app(run_dir: str, fake: FakePool,
                monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    monkeypatch.setattr(shared_mod, "_default", Settings(run_dir=run_dir))
    app = FastAPI()

    async def other() -> None:
        fake.calls.append(("in-process", {}))

    @app.post("/own-response")
    def own_response(tasks: OffloadTasks) -> JSONResponse:
        tasks.add_task(webapps.step, "t", "a")
        return JSONResponse({}, background=starlette.background.BackgroundTask(other))

    @app.post("/failing-background")
    def failing_background(tasks: OffloadTasks) -> JSONResponse:
        tasks.add_task(webapps.step, "t", "a")
        return JSONResponse({}, background=starlette.background.BackgroundTask(
            support_tasks.raise_value_error))

    @app.post("/raises")
    def raises(tasks: OffloadTasks) -> None:
        tasks.add_task(webapps.unwanted_step, "t", "x")
        raise HTTPException(409, "no")

    return app


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def post_and_drain(app: FastAPI, path: str) -> int:
    """POST ``path`` to ``app`` in-process, then wait until its background
    calls are handed off; the response's status."""
    async def go() -> int:
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            status = (await client.post(path)).status_code
        await drain_background(5)
        return status

    return int(run(go()))


def test_dependency_submits_even_when_the_route_returns_its_own_background(
        fastapi_app: FastAPI, fake: FakePool) -> None:
    assert post_and_drain(fastapi_app, "/own-response") == 200
    # after the response (and its own background task), the call was submitted
    assert [op for op, _ in fake.calls] == ["in-process", "submit"]
    assert fake.calls[1][1]["tasks"][0]["kind"] == "tests.support.webapps.step"


def test_dependency_submits_when_the_responses_own_background_fails(
        fastapi_app: FastAPI, fake: FakePool) -> None:
    post_and_drain(fastapi_app, "/failing-background")
    assert [op for op, _ in fake.calls] == ["submit"]


def test_dependency_discards_the_calls_of_a_route_that_raises(
        fastapi_app: FastAPI, fake: FakePool) -> None:
    assert post_and_drain(fastapi_app, "/raises") == 409
    assert fake.calls == []


def test_a_fastapi_that_cannot_tell_what_failed_discards_with_a_warning(
        run_dir: str, fake: FakePool, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """FastAPI before 0.121 has no function stack in the scope: an exception at
    the dependency's yield may be the route's or the response's, and the calls
    are discarded, but never silently."""
    monkeypatch.setattr(shared_mod, "_default", Settings(run_dir=run_dir))
    request = starlette.requests.Request({"type": "http", "method": "POST", "path": "/x",
                                          "headers": [], "query_string": b""})

    async def go() -> None:
        dependency = offload_tasks(request)
        tasks = await dependency.__anext__()
        tasks.add_task(webapps.step, "t", "a")
        with pytest.raises(RuntimeError):
            await dependency.athrow(RuntimeError("the response failed"))
        # Discarded, not handed off: nothing for this loop's outbox to send,
        # and draining it (as a server's shutdown does) sends nothing.
        assert queued_background() == 0
        assert await drain_background(5) == 0
        assert fake.calls == []

    with caplog.at_level("WARNING", logger="offload.server"):
        run(go())
    assert "1 background call(s) of POST /x discarded" in caplog.text
    assert fake.calls == []
