"""The executor loop's soft limit for async tasks (pure asyncio, no processes):
the limit's cancellation becomes ``TaskTimeout`` raised where the task waits;
any other cancellation stays a ``CancelledError``."""

from __future__ import annotations

import asyncio

import pytest

from executor.wire.errors import TaskTimeout
from executor.worker.asynccalls import Running, _soft_limited


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
