"""The outbox: background calls handed off after a response, stored in batches.

``BackgroundTasks`` used to submit its calls itself and wait for the pool's
durable acknowledgement, holding the request's connection meanwhile (about
10 ms under load). Nothing waits for that acknowledgement: the response has
already gone. So each process (per event loop and pool) keeps one
``Outbox``; ``put`` queues the calls and returns at once, and a single
sender submits everything queued in one request per round trip, the way
the pool group-commits. Under load one submit carries the calls of many
requests; idle, a call leaves in the same loop turn.

Contract:

- Calls are kept, in the order put, until the pool has stored them. When
  the pool cannot be reached, or fails to store them (``PoolError`` code
  ``store_unavailable``: a write or fsync of its store failed; ``internal``;
  or a code this outbox does not know), they wait and are sent again (with back-off) for
  as long as the process lives, with one warning per outage; each call
  carries an idempotency key, so a re-send after a lost reply never
  stores one twice.
- A call the pool refuses (``PoolError`` with a code of ``REFUSALS``,
  which sending again cannot change, such as ``invalid``) is dropped with
  an error log naming it; it never blocks the calls behind it. A refused
  batch is re-sent one ``put`` at a time, so only the bad one is dropped.
- ``put`` waits only while ``MAX_QUEUED_CALLS`` calls are already queued
  (back-pressure on a pool that is down for long), never for the pool.
- ``drain`` waits, within a deadline, until everything queued is stored;
  offload's HTTP app drains at lifespan shutdown, and
  ``executor.drain_background()`` does it for other hosts. Calls still
  queued when the process exits are lost, and logged as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from executor.client.client import PoolClient
from executor.wire.errors import PoolError, PoolUnavailable

log = logging.getLogger("offload.background")

MAX_QUEUED_CALLS = 10_000
"""Calls queued per outbox before ``put`` waits for room."""
MAX_BATCH_CALLS = 1_000
"""Calls per submit request at most."""
SUBMIT_TIMEOUT_S = 30.0
"""How long one submit may wait for the pool's reply before it is sent again."""
_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 1.0  # the pool answers, but fails to store: do not press it
_RECONNECT_MAX_S = 0.2
"""The pool cannot be reached: try again at least this often. Calls answered
meanwhile live only in this process's memory, so they go out within this of
the pool's return (a refused connect on a Unix socket costs nothing); with
the 1 s of a store failure, a pool respawn took up to a second longer to be
felt by BackgroundTasks."""
NO_POOL_HINT = ("; is offload's server running (gunicorn -c config/gunicorn.conf.py) with "
                "the same run_dir? In tests of your app, where no pool runs, enter "
                "executor.testing.inline() or fake() (pytest fixtures offload_inline, "
                "offload_fake)")
"""Added to the warning when the pool cannot be reached: most often no server
runs at all, as in an app's own tests."""
REFUSALS = frozenset({"invalid", "unknown_kind", "frame_too_large", "malformed_frame",
                      "unsupported_version", "unknown_op", "not_found", "conflict"})
"""``PoolError`` codes that refuse the request itself (``executor.wire.errors``):
sent again, it would be refused again, so its calls are dropped. Every other
code (``internal``, or one added after this was written) means the pool
failed to store calls it would accept: they are kept and sent again."""


@dataclass(slots=True)
class _Put:
    specs: list[dict[str, Any]]
    stored: asyncio.Future[list[str]]
    size: int  # bytes it adds to a submit frame, about


class Outbox:
    """Calls of this process waiting to be stored by the pool behind ``client``.

    Belongs to the running loop it was made in (``executor.client.shared``).
    """

    def __init__(self, client: PoolClient) -> None:
        self.client = client
        self.max_batch_bytes = max(1, client.max_frame_bytes // 2)
        self._queue: deque[_Put] = deque()
        self._queued_calls = 0
        self._sender: asyncio.Task[None] | None = None
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()

    def queued_calls(self) -> int:
        """Calls put and not yet stored (or dropped)."""
        return self._queued_calls

    def full(self) -> bool:
        """Whether ``put`` would wait for room."""
        return self._queued_calls >= MAX_QUEUED_CALLS

    async def put(self, specs: list[dict[str, Any]]) -> list[tuple[asyncio.Future[list[str]], int]]:
        """Queue the submit specs ``specs``; they are sent in order, together
        unless together they would not fit in one frame (then each is queued
        on its own and the sender packs them into as few submits as fit).

        Returns, in order, one future per part and its number of calls: the
        part's task ids, set once stored, or failed with ``PoolError`` if the
        pool refused it. Futures are set in the order queued. Waits only
        while the outbox is full.
        """
        while self.full():
            self._room.clear()
            await self._room.wait()
        return self.offer(specs)

    def offer(self, specs: list[dict[str, Any]]) -> list[tuple[asyncio.Future[list[str]], int]]:
        """``put`` without the wait: queue ``specs`` even when the outbox is
        full (``put`` waits first; call this only after checking ``full()``)."""
        loop = asyncio.get_running_loop()
        sizes = [len(s.get("payload") or b"") + 256 for s in specs]
        total = sum(sizes)
        parts = ([(specs, total)] if total <= self.max_batch_bytes
                 else [([spec], size) for spec, size in zip(specs, sizes, strict=True)])
        out: list[tuple[asyncio.Future[list[str]], int]] = []
        for part, size in parts:
            stored: asyncio.Future[list[str]] = loop.create_future()
            self._queue.append(_Put(part, stored, size))
            out.append((stored, len(part)))
        self._queued_calls += len(specs)
        self._idle.clear()
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send_all(), name="offload-outbox")
        return out

    async def drain(self, timeout_s: float) -> int:
        """Wait until every queued call is stored, at most ``timeout_s``.

        Returns how many calls are still queued (0 when all are stored).
        """
        if self._queued_calls:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout_s)
        return self._queued_calls

    def _take(self) -> list[_Put]:
        batch: list[_Put] = []
        calls = size = 0
        while self._queue:
            head = self._queue[0]
            if batch and (calls + len(head.specs) > MAX_BATCH_CALLS
                          or size + head.size > self.max_batch_bytes):
                break
            batch.append(self._queue.popleft())
            calls += len(head.specs)
            size += head.size
        return batch

    async def _send_all(self) -> None:
        """The sender: one submit at a time, until the queue is empty."""
        await asyncio.sleep(0)  # let this loop turn's other responses put theirs too
        while self._queue:
            batch = self._take()
            try:
                try:
                    await self._send(batch)
                except PoolError as exc:
                    if len(batch) == 1:
                        self._refused(batch[0], exc)
                        continue
                    for put in batch:  # one bad put spoils a batch: try them one by one
                        try:
                            await self._send([put])
                        except PoolError as one:
                            self._refused(put, one)
            except BaseException:
                # Cancelled (loop closing): the unsent puts stay queued, uncounted.
                self._queue.extendleft(reversed([p for p in batch if not p.stored.done()]))
                raise
        self._idle.set()

    async def _send(self, batch: list[_Put]) -> None:
        """Submit ``batch`` until the pool stores it; retry, with back-off, while
        the pool is unreachable or fails to store it. Raises ``PoolError`` only
        for a refusal (a code of ``REFUSALS``)."""
        specs = [s for put in batch for s in put.specs]
        delay_s = _RETRY_FIRST_S
        down_since: float | None = None
        recovered = ""
        while True:
            try:
                reply = await self.client.call("submit", {"tasks": specs, "reply": "ids"},
                                               SUBMIT_TIMEOUT_S)
                break
            except PoolUnavailable as exc:
                problem, recovered = f"pool unreachable ({exc}){NO_POOL_HINT}", \
                    "pool reachable again"
                cap_s = _RECONNECT_MAX_S
            except PoolError as exc:
                if exc.code in REFUSALS:
                    raise
                problem = f"the pool failed to store background calls ({exc.code}: {exc})"
                recovered = "the pool stores again"
                cap_s = _RETRY_MAX_S
            if down_since is None:
                down_since = time.monotonic()
                log.warning("%s; %d background call(s) wait in this process and will be "
                            "sent again", problem, self._queued_calls)
            delay_s = min(delay_s, cap_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, _RETRY_MAX_S)
        if down_since is not None:
            log.warning("%s after %.1f s; background calls sent", recovered,
                        time.monotonic() - down_since)
        ids = [str(i) for i in reply["ids"]]
        at = 0
        for put in batch:
            n = len(put.specs)
            self._done(put)
            if not put.stored.done():
                put.stored.set_result(ids[at:at + n])
            at += n

    def _refused(self, put: _Put, exc: PoolError) -> None:
        kinds = ", ".join(sorted({str(s.get("kind")) for s in put.specs}))
        log.error("the pool refused %d background call(s) of %s; dropped: %s",
                  len(put.specs), kinds, exc)
        self._done(put)
        if not put.stored.done():
            put.stored.set_exception(exc)
            # Nobody may await it (``BackgroundTasks()`` does not): it is logged above.
            put.stored.exception()

    def _done(self, put: _Put) -> None:
        self._queued_calls -= len(put.specs)
        if self._queued_calls < MAX_QUEUED_CALLS:
            self._room.set()

