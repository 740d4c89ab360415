"""``executor.testing.fake()``: hand-offs record their calls as an executor would
receive them; ``run_all()`` runs them in order, ``clear()`` forgets them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from config.settings import Settings
from executor import BackgroundTasks
from executor.client import divert
from executor.testing import fake
from tests.executor.testing import calls_for_tests as c


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    c.reset()
    yield
    assert divert.handler is None


async def _hand_off(*calls: tuple[object, ...]) -> list[str]:
    tasks = BackgroundTasks()
    for fn, *args in calls:
        tasks.add_task(fn, *args)  # type: ignore[arg-type]
    await tasks()
    return tasks.task_ids


def test_calls_are_recorded_not_run() -> None:
    with fake() as offload:
        ids = asyncio.run(_hand_off((c.record, "a", (1, c.Point(3, 4))), (c.flaky, "b", 1)))
    assert c.SEEN == []
    assert [(call.kind, call.args, call.kwargs, call.fn, call.status)
            for call in offload.calls] == [
        ("tests.executor.testing.calls_for_tests.record", ["a", [1, {"x": 3, "y": 4}]], {},
         c.record, "pending"),
        ("tests.executor.testing.calls_for_tests.flaky", ["b", 1], {}, c.flaky, "pending")]
    assert ids == [call.id for call in offload.calls]
    assert offload.calls[1].max_retries == 2  # the @task's


def test_run_all_runs_the_pending_calls_in_order_once() -> None:
    with fake(settings=Settings(default_max_retries=0)) as offload:
        asyncio.run(_hand_off((c.record, "first"), (c.record_async, "second")))
        asyncio.run(_hand_off((c.record, "third")))
        ran = offload.run_all()
        assert ran == offload.calls
        assert [label for label, _ in c.SEEN] == ["first", "second", "third"]
        assert [call.status for call in offload.calls] == ["succeeded"] * 3
        assert offload.run_all() == []  # nothing left to run
        assert len(c.SEEN) == 3
        offload.clear()
        assert offload.calls == []


def test_run_all_raises_failures_at_the_end_unless_collected() -> None:
    with fake(settings=Settings(default_max_retries=1)) as offload:
        asyncio.run(_hand_off((c.fail, "bad"), (c.record, "good")))
        with pytest.raises(ValueError, match="bad fails on purpose"):
            offload.run_all()
    assert c.SEEN == [("bad", "fail"), ("bad", "fail"), ("good", None)]  # retried once
    with fake(raise_failures=False, settings=Settings(default_max_retries=0)) as offload:
        asyncio.run(_hand_off((c.fail, "bad2")))
        assert offload.run_all() == offload.failures


def test_run_all_works_inside_a_running_event_loop() -> None:
    async def test_body() -> None:
        with fake() as offload:
            await _hand_off((c.record_async, "in-loop"))
            offload.run_all()  # the async call gets a loop of its own
        assert [call.status for call in offload.calls] == ["succeeded"]

    asyncio.run(test_body())
    assert c.SEEN == [("in-loop", "async")]
