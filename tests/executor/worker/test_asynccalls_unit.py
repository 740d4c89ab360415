"""The ``async def`` calls of an executor, on a real event loop in this
process (no executor process, no pipes: ``AsyncCalls`` gets a ``running``
map and an ``on_end`` of the test's own, as the executor's loop hands it its
own). The soft limit's cancellation becomes ``TaskTimeout`` raised where the
task waits; any other cancellation stays a ``CancelledError``; a cancel or a
soft limit ends one call alone; what a call leaves running is cancelled when
it returns, a neighbour's is not."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from executor.wire.codec import decode_value
from executor.wire.errors import TaskTimeout
from executor.worker import context
from executor.worker.asynccalls import AsyncCalls, Running, _soft_limited
from executor.worker.limits import Limits
from executor.worker.runner import Call


def _entry() -> Running:
    return Running({"id": "t", "kind": "k", "timeout_s": 1.0}, None, 1)


async def _sleeper(log: list[str]) -> str:
    try:
        await asyncio.sleep(30)
    except TaskTimeout:
        log.append("timeout inside")
        await asyncio.sleep(0)  # it may still await while it cleans up
        raise
    except asyncio.CancelledError:
        log.append("cancelled inside")
        raise
    return "not reached"


def test_the_soft_limit_raises_task_timeout_inside_the_task() -> None:
    async def main() -> tuple[list[str], BaseException | None, int]:
        log: list[str] = []
        entry = _entry()
        task = asyncio.ensure_future(_soft_limited(_sleeper(log), entry))
        await asyncio.sleep(0.01)
        entry.timed_out = True
        task.cancel()
        try:
            await task
        except BaseException as exc:
            return log, exc, task.cancelling()
        return log, None, task.cancelling()

    log, exc, cancelling = asyncio.run(main())
    assert log == ["timeout inside"]
    assert isinstance(exc, TaskTimeout)
    assert cancelling == 0  # handled: the asyncio task is not left half-cancelled


def test_a_cancel_on_request_stays_a_cancellation() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        entry = _entry()
        task = asyncio.ensure_future(_soft_limited(_sleeper(log), entry))
        await asyncio.sleep(0.01)
        entry.cancelled = True
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return log

    assert asyncio.run(main()) == ["cancelled inside"]


def test_values_and_exceptions_pass_through() -> None:
    async def ok() -> int:
        await asyncio.sleep(0)
        return 7

    async def bad() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    async def main() -> int:
        with pytest.raises(ValueError, match="boom"):
            await _soft_limited(bad(), _entry())
        return int(await _soft_limited(ok(), _entry()))

    assert asyncio.run(main()) == 7


class Rig:
    """``AsyncCalls`` on the running loop, with the executor's part played here:
    a call is put in ``running`` before it is spawned and taken out when it
    ends; each ``DONE`` body is kept by task id."""

    def __init__(self) -> None:
        self.running: dict[str, Running] = {}
        self.ended: dict[str, dict[str, Any]] = {}
        self.calls = AsyncCalls(asyncio.get_running_loop(), Limits(), {}, self.running,
                                self._on_end)

    def _on_end(self, entry: Running, done: dict[str, Any]) -> None:
        del self.running[entry.desc["id"]]
        self.ended[entry.desc["id"]] = done

    def spawn(self, task_id: str, fn: Any, *args: Any, timeout_s: float = 60.0,
              awaitable: Any = None) -> Running:
        call = Call(fn, list(args), {}, is_async=True, concurrency=10, kind_concurrency=10)
        entry = Running({"id": task_id, "kind": "k", "timeout_s": timeout_s}, call, 10)
        self.running[task_id] = entry
        self.calls.spawn(entry, call, awaitable)
        return entry


async def until(predicate: Callable[[], object], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.001)


def test_a_call_ends_with_its_result_and_its_soft_limit_disarmed() -> None:
    async def double(x: int) -> dict[str, int]:
        await asyncio.sleep(0)
        return {"x": 2 * x}

    async def main() -> tuple[dict[str, Any], Running]:
        rig = Rig()
        entry = rig.spawn("t", double, 21)
        await until(lambda: "t" in rig.ended)
        return rig.ended["t"], entry

    done, entry = asyncio.run(main())
    assert done["ok"] and done["error"] is None and decode_value(done["result"]) == {"x": 42}
    assert entry.timer is not None and entry.timer.cancelled()


def test_the_soft_limit_ends_one_call_with_a_timeout_it_cleans_up_after() -> None:
    log: list[str] = []

    async def main() -> dict[str, dict[str, Any]]:
        rig = Rig()
        release = asyncio.Event()

        async def slow() -> None:
            try:
                await asyncio.Event().wait()  # never set: only the soft limit ends it
            except TaskTimeout:
                log.append("cleaned up")
                raise

        async def neighbour() -> str:
            await release.wait()
            return "fine"

        rig.spawn("slow", slow, timeout_s=0.05)
        rig.spawn("neighbour", neighbour)
        await until(lambda: "slow" in rig.ended)
        assert "neighbour" in rig.running  # the limit ended that call alone
        release.set()
        await until(lambda: "neighbour" in rig.ended)
        return rig.ended

    ended = asyncio.run(main())
    assert log == ["cleaned up"]
    slow = ended["slow"]
    assert not slow["ok"] and slow["retryable"]
    assert slow["error"]["reason"] == "timeout" and "TaskTimeout" in slow["error"]["message"]
    assert ended["neighbour"]["ok"] and decode_value(ended["neighbour"]["result"]) == "fine"


def test_cancel_ends_that_call_alone_and_it_is_not_retried() -> None:
    async def main() -> dict[str, dict[str, Any]]:
        rig = Rig()
        release = asyncio.Event()

        async def waits() -> str:
            await release.wait()
            return "done"

        rig.spawn("a", waits)
        rig.spawn("b", waits)
        await asyncio.sleep(0)  # both are waiting
        sync = Running({"id": "def", "kind": "k", "timeout_s": 1.0}, None, 1)
        rig.running["def"] = sync  # a def task has no asyncio task: nothing to cancel
        rig.calls.cancel("def")
        rig.calls.cancel("unknown")
        assert not sync.cancelled
        del rig.running["def"]
        rig.calls.cancel("a")
        await until(lambda: "a" in rig.ended)
        assert "b" in rig.running
        release.set()
        await until(lambda: "b" in rig.ended)
        return rig.ended

    ended = asyncio.run(main())
    a = ended["a"]
    assert not a["ok"] and a["retryable"] is False
    assert a["error"]["message"].startswith("cancelled on request: CancelledError")
    assert ended["b"]["ok"]


def test_what_a_call_left_running_is_cancelled_when_it_returns_but_not_a_neighbours() -> None:
    async def main() -> tuple[asyncio.Task[Any], asyncio.Task[Any], set[str]]:
        rig = Rig()
        kids: dict[str, asyncio.Task[Any]] = {}
        release = asyncio.Event()

        async def starts_a_child(name: str, wait: bool) -> None:
            kids[name] = asyncio.get_running_loop().create_task(asyncio.Event().wait())
            if wait:
                await release.wait()

        rig.spawn("a", starts_a_child, "a", False)
        rig.spawn("b", starts_a_child, "b", True)
        await until(lambda: "a" in rig.ended)
        assert kids["a"].cancelled()
        assert not kids["b"].done()  # b's own child: b has not returned
        release.set()
        await until(lambda: "b" in rig.ended)
        return kids["a"], kids["b"], set(rig.calls.children)

    a_kid, b_kid, left = asyncio.run(main())
    assert a_kid.cancelled() and b_kid.cancelled() and left == set()


def test_only_a_running_call_owns_the_tasks_made_in_its_context() -> None:
    async def main() -> dict[str, set[asyncio.Task[Any]]]:
        rig = Rig()
        context.start("gone")  # a task id no longer (or never) running here
        try:
            orphan = asyncio.get_running_loop().create_task(asyncio.sleep(0))
        finally:
            context.start(None)
        await orphan
        return rig.calls.children

    assert asyncio.run(main()) == {}


def test_the_awaitable_a_def_call_returned_is_awaited_as_the_call() -> None:
    async def main() -> dict[str, Any]:
        rig = Rig()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        rig.spawn("t", None, awaitable=future)  # fn is not called again
        await asyncio.sleep(0)
        assert "t" in rig.running
        future.set_result(7)
        await until(lambda: "t" in rig.ended)
        return rig.ended["t"]

    done = asyncio.run(main())
    assert done["ok"] and decode_value(done["result"]) == 7


def test_arguments_that_do_not_bind_fail_the_call_for_good() -> None:
    async def one(x: int) -> int:
        return x

    async def main() -> dict[str, Any]:
        rig = Rig()
        rig.spawn("t", one)  # no argument for x
        await until(lambda: "t" in rig.ended)
        return rig.ended["t"]

    done = asyncio.run(main())
    assert not done["ok"] and done["retryable"] is False
    assert "do not fit the function" in done["error"]["message"]
