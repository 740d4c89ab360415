"""The outbox behind ``BackgroundTasks()``, over the fake pool: batching across
requests, order, a pool that is down and comes back, refusals, back-pressure."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator

import pytest

from config.settings import Settings
from executor import outbox as outbox_mod
from executor.background import BackgroundTasks
from executor.codec import decode_call
from executor.shared import drain_background, shared_outbox
from tests.server.fakepool import FakePool

MODULE = __name__


def helper(x: int) -> int:
    return x


def unknown_to_the_pool(x: int) -> int:
    return x


@pytest.fixture
def fake_path(run_dir: str) -> str:
    return os.path.join(run_dir, "pool.sock")


def make_fake(path: str) -> FakePool:
    pool = FakePool(path)
    pool.kinds[f"{MODULE}.helper"] = {"max_retries": 3, "timeout_s": 300.0}
    return pool


@pytest.fixture
def fake(fake_path: str) -> Iterator[FakePool]:
    pool = make_fake(fake_path).start()
    yield pool
    pool.stop()


def submitted(fake: FakePool) -> list[list[int]]:
    """The ``x`` of every submitted call, per submit request."""
    return [[decode_call(s["payload"])[0][0] for s in args["tasks"]]
            for op, args in fake.calls if op == "submit"]


def test_calls_of_many_requests_go_in_one_submit_in_order(run_dir: str,
                                                          fake: FakePool) -> None:
    settings = Settings(run_dir=run_dir)

    async def request(x: int) -> BackgroundTasks:
        tasks = BackgroundTasks(settings=settings)
        tasks.add_task(helper, x)
        await tasks()
        return tasks

    async def go() -> list[BackgroundTasks]:
        handed = await asyncio.gather(*(request(x) for x in range(50)))
        assert await drain_background(5) == 0
        return handed

    handed = asyncio.run(go())
    assert submitted(fake) == [list(range(50))]
    assert [t.task_ids[0] for t in handed] == list(fake.tasks)
    assert all(t.pending_count() == 0 for t in handed)


def test_while_a_submit_is_in_flight_the_next_calls_gather(run_dir: str,
                                                           fake: FakePool) -> None:
    settings = Settings(run_dir=run_dir)

    async def go() -> None:
        for x in range(200):
            tasks = BackgroundTasks(settings=settings)
            tasks.add_task(helper, x)
            await tasks()
            if x % 20 == 0:
                await asyncio.sleep(0)  # let the sender go now and then
        assert await drain_background(5) == 0

    asyncio.run(go())
    batches = submitted(fake)
    assert [x for b in batches for x in b] == list(range(200))  # all, once, in order
    assert len(batches) < 200


def test_calls_wait_for_a_pool_that_is_down_and_are_stored_once_it_is_back(
        run_dir: str, fake_path: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(run_dir=run_dir)
    pool = make_fake(fake_path)
    caplog.set_level(logging.WARNING, "offload.background")

    async def go() -> tuple[int, int, list[str]]:
        tasks = BackgroundTasks(settings=settings)
        for x in range(3):
            tasks.add_task(helper, x)
        await tasks()
        await asyncio.sleep(0.3)  # the sender has tried and is backing off
        waiting = shared_outbox(settings).queued_calls()
        pool.start()
        left = await drain_background(10)
        return waiting, left, tasks.task_ids

    try:
        waiting, left, ids = asyncio.run(go())
    finally:
        pool.stop()
    assert (waiting, left) == (3, 0)
    assert submitted(pool)[-1] == [0, 1, 2] and ids == list(pool.tasks)
    assert "pool unreachable" in caplog.text and "reachable again" in caplog.text


def test_a_refused_call_does_not_spoil_the_calls_sent_with_it(
        run_dir: str, fake: FakePool, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(run_dir=run_dir)

    async def go() -> list[BackgroundTasks]:
        handed = []
        for fn in (helper, unknown_to_the_pool, helper):
            tasks = BackgroundTasks(settings=settings)
            tasks.add_task(fn, len(handed))
            await tasks()
            handed.append(tasks)
        assert await drain_background(5) == 0
        return handed

    first, refused, third = asyncio.run(go())
    # one batch refused as a whole, then each put alone: only the bad one dropped
    assert submitted(fake) == [[0, 1, 2], [0], [1], [2]]
    assert len(first.task_ids) == len(third.task_ids) == 1 and refused.task_ids == []
    assert len(fake.tasks) == 2 and refused.pending_count() == 0
    assert f"refused 1 background call(s) of {MODULE}.unknown_to_the_pool" in caplog.text


def test_a_full_outbox_makes_the_hand_off_wait(run_dir: str, fake_path: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_mod, "MAX_QUEUED_CALLS", 2)
    settings = Settings(run_dir=run_dir)
    pool = make_fake(fake_path)

    async def go() -> tuple[bool, int]:
        for x in range(2):
            tasks = BackgroundTasks(settings=settings)
            tasks.add_task(helper, x)
            await tasks()
        third = BackgroundTasks(settings=settings)
        third.add_task(helper, 2)
        handing = asyncio.ensure_future(third())
        await asyncio.sleep(0.2)
        blocked = not handing.done()
        pool.start()  # room again once the first two are stored
        await asyncio.wait_for(handing, 10)
        return blocked, await drain_background(10)

    try:
        blocked, left = asyncio.run(go())
    finally:
        pool.stop()
    assert blocked and left == 0
    assert [x for b in submitted(pool) for x in b] == [0, 1, 2]
