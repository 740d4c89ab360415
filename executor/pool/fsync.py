"""The group commit's fsync thread: replies wait for the disk, the loop does not.

Each turn commits without fsync on the loop (``Store.batch``); submitters may
only be answered once what was committed is on disk. One thread runs
``Store.sync`` (an fdatasync of SQLite's write-ahead log; nothing for a
PostgreSQL store, whose COMMIT is durable) and calls the callbacks of every
turn that committed before it began. Turns that commit while it runs share
the next fsync, so the loop keeps serving and a busy pool pays one fsync for
many turns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable

log = logging.getLogger("offload.pool")

Acknowledge = Callable[[BaseException | None], None]


class FsyncThread:
    """Calls back once everything committed so far is on disk. Used from the
    pool's loop only; ``sync`` runs on a thread of its own."""

    def __init__(self, sync: Callable[[], None]) -> None:
        """``sync``: make every committed change durable (``Store.sync``);
        blocking, and safe to call from another thread."""
        self._sync = sync
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "offload-fsync")
        self._syncing = False
        self._next: list[Acknowledge] = []

    def after_sync(self, callback: Acknowledge) -> None:
        """Call ``callback(None)`` on the loop once everything committed so far
        is on disk (``callback(error)`` if the fsync failed). At most one
        fsync runs at a time; callbacks that arrive meanwhile share the next one."""
        self._next.append(callback)
        if not self._syncing:
            self._start()

    def _start(self) -> None:
        batch, self._next = self._next, []
        self._syncing = True
        fut = asyncio.get_running_loop().run_in_executor(self._thread, self._sync)
        fut.add_done_callback(lambda f: self._synced(f, batch))

    def _synced(self, fut: asyncio.Future[None], batch: list[Acknowledge]) -> None:
        self._syncing = False
        error = fut.exception()
        if error is not None:
            log.error("fsync of the store failed: %s", error)
        for callback in batch:
            callback(error)
        if self._next:
            self._start()

    async def close(self) -> None:
        """Wait until every callback asked for so far has been called, then end
        the thread. Call once, when nothing commits any more."""
        while self._syncing or self._next:
            await asyncio.sleep(0.005)
        self._thread.shutdown()
