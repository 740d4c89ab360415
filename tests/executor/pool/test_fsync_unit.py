"""``FsyncThread``: replies wait for the disk, in shared fsyncs (a real event
loop and thread; the store's ``sync`` is a stand-in the test holds, a narrow
seam: the real one is covered by the durability tests)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from executor.pool.fsync import FsyncThread


class HeldSync:
    """A ``Store.sync`` that runs only when the test lets it, and may fail."""

    def __init__(self) -> None:
        self.go = threading.Semaphore(0)
        self.started = 0
        self.fail_next = False

    def __call__(self) -> None:
        self.started += 1
        self.go.acquire()
        if self.fail_next:
            self.fail_next = False
            raise OSError(5, "Input/output error")


def _heard(into: dict[str, BaseException | None], name: str
           ) -> Callable[[BaseException | None], None]:
    def callback(error: BaseException | None) -> None:
        into[name] = error
    return callback


async def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.001)


def test_callbacks_that_arrive_during_an_fsync_share_the_next_one() -> None:
    async def main() -> None:
        sync = HeldSync()
        fsync = FsyncThread(sync)
        heard: dict[str, BaseException | None] = {}
        fsync.after_sync(_heard(heard, "a"))
        await _until(lambda: sync.started == 1)
        fsync.after_sync(_heard(heard, "b"))  # committed after it began
        fsync.after_sync(_heard(heard, "c"))
        sync.go.release()
        await _until(lambda: "a" in heard)
        assert heard == {"a": None}  # b and c wait for an fsync that began after them
        await _until(lambda: sync.started == 2)
        sync.go.release()
        await _until(lambda: len(heard) == 3)
        assert heard == {"a": None, "b": None, "c": None} and sync.started == 2
        await fsync.close()

    asyncio.run(main())


def test_a_failed_fsync_is_told_to_its_callbacks_and_the_next_one_runs() -> None:
    async def main() -> None:
        sync = HeldSync()
        fsync = FsyncThread(sync)
        heard: list[tuple[str, BaseException | None]] = []
        sync.fail_next = True
        fsync.after_sync(lambda e: heard.append(("a", e)))
        await _until(lambda: sync.started == 1)
        fsync.after_sync(lambda e: heard.append(("b", e)))
        sync.go.release()
        sync.go.release()
        await _until(lambda: len(heard) == 2)
        (first, error), (second, fine) = heard
        assert (first, second, fine) == ("a", "b", None)
        assert isinstance(error, OSError) and error.errno == 5
        await fsync.close()

    asyncio.run(main())


def test_close_waits_for_every_callback_asked_for() -> None:
    async def main() -> None:
        sync = HeldSync()
        fsync = FsyncThread(sync)
        heard: list[str] = []
        fsync.after_sync(lambda e: heard.append("a"))
        await _until(lambda: sync.started == 1)
        fsync.after_sync(lambda e: heard.append("b"))
        closing = asyncio.ensure_future(fsync.close())
        await asyncio.sleep(0.02)
        assert not closing.done() and heard == []  # the fsync is held
        sync.go.release()
        sync.go.release()
        await asyncio.wait_for(closing, 10)
        assert heard == ["a", "b"]

    asyncio.run(main())
