"""``executor.testing.inline()``: hand-offs run their calls in the test process,
in order, after the arguments went through the real codec; failures raised
at the end of the hand-off; retries without sleeping; no nesting."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from config.settings import Settings
from executor import BackgroundTask, BackgroundTasks
from executor.client import divert, shared
from executor.testing import fake, inline
from tests.executor.testing import calls_for_tests as c


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    c.reset()
    yield
    assert divert.handler is None, "a test mode was left on"


def _steps_app() -> Starlette:
    """POST /steps {"steps": [[fn name, *args], ...]}: one add_task per step."""

    async def steps(request: Request) -> JSONResponse:
        tasks = BackgroundTasks()
        for name, *args in (await request.json())["steps"]:
            tasks.add_task(getattr(c, name), *args)
        return JSONResponse({"added": len(tasks)}, background=tasks)

    return Starlette(routes=[Route("/steps", steps, methods=["POST"])])


def test_calls_run_at_hand_off_in_order_under_starlettes_test_client() -> None:
    client = TestClient(_steps_app())
    with inline() as offload:
        response = client.post("/steps", json={"steps": [["record", "a", 1], ["record_async", "b"],
                                                         ["record", "c", [1, 2]]]})
        assert response.status_code == 200
        # TestClient returned after the background work: the calls have run.
        assert c.SEEN == [("a", 1), ("b", "async"), ("c", [1, 2])]
    assert [(call.kind, call.args, call.status, call.result) for call in offload.calls] == [
        ("tests.executor.testing.calls_for_tests.record", ["a", 1], "succeeded", "a"),
        ("tests.executor.testing.calls_for_tests.record_async", ["b"], "succeeded", "b"),
        ("tests.executor.testing.calls_for_tests.record", ["c", [1, 2]], "succeeded", "c")]
    assert offload.calls[0].fn is c.record
    assert len({call.group_id for call in offload.calls}) == 1
    assert [call.seq for call in offload.calls] == [0, 1, 2]


def test_arguments_arrive_as_the_executor_decodes_them() -> None:
    when, key = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), uuid.uuid4()

    async def hand_off() -> None:
        tasks = BackgroundTasks()
        tasks.add_task(c.record, "types", (1, 2), point=c.Point(1, 2), when=when, key=key,
                       amount=Decimal("1.10"), raw=b"\x00")
        await tasks()

    with inline() as offload:
        asyncio.run(hand_off())
    expected: dict[str, Any] = {"point": {"x": 1, "y": 2}, "when": when, "key": key,
                                "amount": Decimal("1.10"), "raw": b"\x00"}
    (seen,) = c.SEEN
    assert seen == ("types", ([1, 2], expected))  # a tuple arrives as a list
    assert offload.calls[0].args == ["types", [1, 2]]
    assert offload.calls[0].kwargs == expected


def test_a_non_encodable_argument_fails_at_add_task_as_in_production() -> None:
    def refusal() -> str:
        with pytest.raises(TypeError) as caught:
            BackgroundTasks().add_task(c.record, "x", value=object())
        return str(caught.value)

    production = refusal()
    with inline() as offload:
        assert refusal() == production
    assert "argument 'value' cannot be sent to an executor" in production
    assert "builtins.object is not encodable" in production
    assert offload.calls == [] and c.SEEN == []
    with inline(), pytest.raises(TypeError, match="bound methods"):
        BackgroundTasks().add_task(c.Mailer().send, "ada@example.com")


def test_a_failed_call_does_not_stop_the_next_and_is_raised_at_the_end() -> None:
    client = TestClient(_steps_app())
    with inline(settings=Settings(default_max_retries=0)) as offload, \
            pytest.raises(ValueError, match="boom fails on purpose") as caught:
        client.post("/steps", json={"steps": [["fail", "boom"], ["record", "after"]]})
    assert c.SEEN == [("boom", "fail"), ("after", None)]
    assert [call.status for call in offload.calls] == ["failed", "succeeded"]
    assert offload.failures == [offload.calls[0]]
    assert any("fail('boom')" in note for note in caught.value.__notes__)


def test_several_failures_are_raised_as_a_group() -> None:
    client = TestClient(_steps_app())
    with inline(settings=Settings(default_max_retries=0)), \
            pytest.raises(ExceptionGroup) as caught:
        client.post("/steps", json={"steps": [["fail", "one"], ["fail", "two"]]})
    # Starlette may wrap the hand-off's error in a group of its own: find ours.
    group = caught.value
    while len(group.exceptions) == 1 and isinstance(group.exceptions[0], ExceptionGroup):
        group = group.exceptions[0]
    assert [str(e) for e in group.exceptions] == ["one fails on purpose", "two fails on purpose"]


def test_failures_are_collected_when_asked() -> None:
    client = TestClient(_steps_app())
    with inline(raise_failures=False, settings=Settings(default_max_retries=0)) as offload:
        response = client.post("/steps", json={"steps": [["fail", "x"], ["record", "y"]]})
    assert response.status_code == 200
    assert [(f.kind, type(f.error)) for f in offload.failures] == [
        ("tests.executor.testing.calls_for_tests.fail", ValueError)]


def _run(*calls: tuple[Any, ...], settings: Settings | None = None) -> list[Any]:
    async def hand_off() -> None:
        tasks = BackgroundTasks()
        for fn, *args in calls:
            tasks.add_task(fn, *args)
        await tasks()

    with inline(raise_failures=False, settings=settings) as offload:
        asyncio.run(hand_off())
    return offload.calls


def test_retries_follow_the_tasks_policy_without_sleeping() -> None:
    ok, exhausted, asked, picky = _run((c.flaky, "ok", 3), (c.flaky, "exhausted", 4),
                                       (c.asks_retry, "asked"), (c.picky, "picky"))
    assert (ok.status, ok.attempts, ok.result) == ("succeeded", 3, 3)  # max_retries=2
    assert (exhausted.status, exhausted.attempts) == ("failed", 3)
    assert isinstance(exhausted.error, ConnectionError)
    # Retry(delay_s=3600) is retried at once (max_retries=1): no sleep.
    assert (asked.status, asked.attempts) == ("failed", 2)
    # KeyError is not in retry_on: one attempt only.
    assert (picky.status, picky.attempts, type(picky.error)) == ("failed", 1, KeyError)
    assert c.ATTEMPTS == {"ok": 3, "exhausted": 3, "asked": 2, "picky": 1}


def test_plain_functions_get_default_max_retries_from_the_settings() -> None:
    (call,) = _run((c.fail, "plain"), settings=Settings(default_max_retries=2))
    assert (call.status, call.attempts, call.max_retries) == ("failed", 3, 2)


def test_a_result_that_cannot_be_sent_back_fails_without_retries() -> None:
    (call,) = _run((c.returns_unencodable, "r"), settings=Settings(default_max_retries=3))
    assert (call.status, call.attempts) == ("failed", 1)
    assert "cannot be sent back from the executor" in str(call.error)


def test_submit_and_a_single_background_task_get_the_calls_ids() -> None:
    async def hand_off() -> tuple[list[str], str]:
        tasks = BackgroundTasks()
        tasks.add_task(c.record, "s1")
        tasks.add_task(c.record, "s2")
        one = BackgroundTask(c.record, "single")
        return await tasks.submit(), await one.submit()

    with inline() as offload:
        ids, single = asyncio.run(hand_off())
    assert [*ids, single] == [call.id for call in offload.calls]
    assert [label for label, _ in c.SEEN] == ["s1", "s2", "single"]


def test_modes_refuse_to_nest_and_leave_production_behaviour_behind() -> None:
    with inline():
        with pytest.raises(RuntimeError, match=r"inline\(\) is already on \(entered at "
                           r".*test_inline.py:\d+\).*do not nest"):
            inline().__enter__()
        with pytest.raises(RuntimeError, match="do not nest"), fake():
            pass
        assert divert.handler is not None
    assert divert.handler is None


def test_inline_decorates_sync_and_async_functions() -> None:
    mode = inline()

    @mode
    def sync_test() -> None:
        asyncio.run(_hand_off_one("deco-sync"))

    @mode
    async def async_test() -> None:
        await _hand_off_one("deco-async")

    sync_test()
    assert [call.args for call in mode.calls] == [["deco-sync"]]
    asyncio.run(async_test())
    assert [call.args for call in mode.calls] == [["deco-async"]]  # a new list per entry
    assert [label for label, _ in c.SEEN] == ["deco-sync", "deco-async"]
    assert divert.handler is None


async def _hand_off_one(label: str) -> None:
    tasks = BackgroundTasks()
    tasks.add_task(c.record, label)
    await tasks()


def test_outside_a_mode_with_no_pool_the_warning_says_what_to_do(
        tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(run_dir=str(tmp_path))  # no pool listens there

    async def hand_off() -> None:
        tasks = BackgroundTasks(settings=settings)
        tasks.add_task(c.record, "lost")
        await tasks()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while "pool unreachable" not in caplog.text and loop.time() < deadline:
            await asyncio.sleep(0.01)

    try:
        with caplog.at_level("WARNING", logger="offload.background"):
            asyncio.run(hand_off())
    finally:
        shared._outboxes.clear()  # the call is lost on purpose: no error at exit
    assert "pool unreachable" in caplog.text
    assert "enter executor.testing.inline() or fake()" in caplog.text
    assert c.SEEN == []
