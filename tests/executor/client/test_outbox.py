"""The outbox behind ``BackgroundTasks()``, over the fake pool: batching across
requests, order, a pool that is down and comes back, a pool that fails to store
and recovers, refusals, back-pressure."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from config.settings import Settings
from executor.client import outbox as outbox_mod
from executor.client.background import BackgroundTasks
from executor.client.shared import drain_background, shared_outbox
from executor.wire.codec import decode_call
from tests.server.fakepool import FakePool, FakePoolError

MODULE = __name__


def helper(x: int) -> int:
    return x


def unknown_to_the_pool(x: int) -> int:
    return x


def big(x: int, blob: str) -> int:
    return x


@pytest.fixture
def fake_path(run_dir: str) -> str:
    return os.path.join(run_dir, "pool.sock")


def make_fake(path: str) -> FakePool:
    pool = FakePool(path)
    pool.kinds[f"{MODULE}.helper"] = {"max_retries": 3, "timeout_s": 300.0}
    pool.kinds[f"{MODULE}.big"] = {"max_retries": 3, "timeout_s": 300.0}
    return pool


class FlakyPool(FakePool):
    """A fake pool whose ``n``-th ``submit`` (from 1) answers the error
    ``failures[n]`` (a wire form) if there is one, and that refuses as
    ``invalid`` any call whose ``x`` is in ``bad``, as the real pool refuses
    a spec it cannot store."""

    def __init__(self, path: str, failures: dict[int, dict[str, Any]],
                 bad: frozenset[int] = frozenset()) -> None:
        super().__init__(path)
        self.kinds[f"{MODULE}.helper"] = {"max_retries": 3, "timeout_s": 300.0}
        self.failures = failures
        self.bad = bad
        self.submits = 0

    async def _op_submit(self, args: dict[str, Any]) -> dict[str, Any]:
        self.submits += 1
        err = self.failures.get(self.submits)
        if err is not None:
            raise FakePoolError(err["code"], err["message"], err.get("field"))
        for i, spec in enumerate(args["tasks"]):
            if decode_call(spec["payload"])[0][0] in self.bad:
                raise FakePoolError("invalid", f"tasks[{i}].priority must be an integer "
                                    "from -1000 to 1000", f"tasks[{i}].priority")
        return await super()._op_submit(args)


STORE_FAILED = {"code": "internal", "message": "the store refused the tasks: disk I/O error"}
NOT_DURABLE = {"code": "store_unavailable",
               "message": "the tasks could not be made durable: [Errno 5] Input/output error"}


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


def _hand_off(settings: Settings, xs: list[int]) -> list[BackgroundTasks]:
    """Hand off one ``helper(x)`` call per request, drain, and return the requests."""
    async def go() -> list[BackgroundTasks]:
        handed = []
        for x in xs:
            tasks = BackgroundTasks(settings=settings)
            tasks.add_task(helper, x)
            await tasks()
            handed.append(tasks)
        assert await drain_background(10) == 0
        return handed

    return asyncio.run(go())


def test_a_pool_that_fails_to_store_gets_the_calls_again_until_it_stores_them(
        run_dir: str, fake_path: str, caplog: pytest.LogCaptureFixture) -> None:
    """``internal`` (a failed write or fsync) is not a refusal: the calls stay
    queued and are sent again with back-off, and are stored once, in order."""
    settings = Settings(run_dir=run_dir)
    pool = FlakyPool(fake_path, {1: STORE_FAILED, 2: NOT_DURABLE, 3: STORE_FAILED}).start()
    caplog.set_level(logging.WARNING, "offload.background")
    try:
        handed = _hand_off(settings, [0, 1, 2])
    finally:
        pool.stop()
    assert submitted(pool) == [[0, 1, 2]] * 4  # three failures, then stored
    assert [t.task_ids[0] for t in handed] == list(pool.tasks)  # each once, in order
    assert all(t.pending_count() == 0 for t in handed)
    assert "dropped" not in caplog.text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, caplog.text  # once when it fails, once when it stores again
    assert "disk I/O error" in warnings[0].getMessage()
    assert "3 background call(s) wait" in warnings[0].getMessage()
    assert "the pool stores again" in warnings[1].getMessage()


def test_submit_waits_through_store_failures_instead_of_failing(
        run_dir: str, fake_path: str) -> None:
    """``submit()``'s futures fail only on a real refusal; an unknown error
    code is taken as a failure to store, not as a refusal."""
    settings = Settings(run_dir=run_dir)
    odd = {"code": "overloaded", "message": "come back later"}
    pool = FlakyPool(fake_path, {1: STORE_FAILED, 2: odd}).start()

    async def go() -> list[str]:
        tasks = BackgroundTasks(settings=settings)
        tasks.add_task(helper, 7)
        return await tasks.submit(10)

    try:
        ids = asyncio.run(go())
    finally:
        pool.stop()
    assert ids == list(pool.tasks) and len(ids) == 1


def test_a_refusal_still_drops_only_the_refused_call(
        run_dir: str, fake_path: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(run_dir=run_dir)
    pool = FlakyPool(fake_path, {}, bad=frozenset({1})).start()
    try:
        first, refused, third = _hand_off(settings, [0, 1, 2])
    finally:
        pool.stop()
    assert submitted(pool) == [[0, 1, 2], [0], [1], [2]]
    assert len(first.task_ids) == len(third.task_ids) == 1 and refused.task_ids == []
    assert len(pool.tasks) == 2 and refused.pending_count() == 0
    assert f"refused 1 background call(s) of {MODULE}.helper" in caplog.text
    assert "tasks[0].priority must be an integer" in caplog.text


def test_a_store_failure_while_a_refused_batch_is_resent_drops_nothing_more(
        run_dir: str, fake_path: str, caplog: pytest.LogCaptureFixture) -> None:
    """After a refusal the puts go one at a time; one of those failing to be
    stored is sent again, not dropped with the refused one."""
    settings = Settings(run_dir=run_dir)
    # the batch is refused; the second submit is ``[0]`` alone
    pool = FlakyPool(fake_path, {2: STORE_FAILED}, bad=frozenset({1})).start()
    caplog.set_level(logging.WARNING, "offload.background")
    try:
        first, refused, third = _hand_off(settings, [0, 1, 2])
    finally:
        pool.stop()
    assert submitted(pool) == [[0, 1, 2], [0], [0], [1], [2]]
    assert len(first.task_ids) == len(third.task_ids) == 1 and refused.task_ids == []
    assert list(pool.tasks) == first.task_ids + third.task_ids
    assert caplog.text.count("dropped") == 1


def test_calls_too_large_for_one_submit_together_go_in_several_in_order(
        run_dir: str, fake: FakePool) -> None:
    # 256 KiB frames: a submit carries up to 128 KiB of calls.
    settings = Settings(run_dir=run_dir, max_frame_bytes=256 * 1024, max_result_bytes=1024)
    tasks = BackgroundTasks(settings=settings)
    for x in range(3):
        tasks.add_task(big, x, "b" * 50_000)
    tasks.add_task(helper, 3)

    async def go() -> list[str]:
        return await tasks.submit()

    ids = asyncio.run(go())
    assert submitted(fake) == [[0, 1], [2, 3]]
    assert ids == list(fake.tasks) and len(ids) == 4


def test_task_ids_keep_the_order_added_when_a_large_hand_off_is_split(
        run_dir: str, fake: FakePool) -> None:
    settings = Settings(run_dir=run_dir, max_frame_bytes=256 * 1024, max_result_bytes=1024)
    tasks = BackgroundTasks(settings=settings)

    async def go() -> list[str]:
        for x in range(3):  # 150 KB together: two submits
            tasks.add_task(big, x, "b" * 50_000)
        await tasks()
        tasks.add_task(helper, 3)  # a second hand-off, stored with the first's tail
        await tasks()
        return await tasks.submit()

    ids = asyncio.run(go())
    assert submitted(fake) == [[0, 1], [2, 3]]
    assert ids == tasks.task_ids == list(fake.tasks)  # the order added, not the order stored
