"""How a pool on a shared store hears that other pools made work due.

A single writer knows of every change itself. On a shared store another
pool's submission, retry, recovered task or finished group member may be
due now: the store's ``Listener`` (LISTEN/NOTIFY on PostgreSQL) wakes this
pool at once, and every ``POLL_S`` it looks anyway, for poolers that do not
pass notifications on and for the moments the listener is reconnecting.
Waking only means "claim at the end of this turn": a claim that finds
nothing costs one indexed query.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from executor.store import Store, StoreError
from executor.store.base import Listener

log = logging.getLogger("offload.pool")

POLL_S = 1.0  # look for due work at least this often, notified or not
RELISTEN_S = 2.0  # after the listener could not connect or was lost


class Wakeup:
    """Calls ``wake()`` when other pools made work due (or every ``POLL_S``)."""

    def __init__(self, store: Store, wake: Callable[[], None]) -> None:
        self.store = store
        self.wake = wake
        self._listener: Listener | None = None
        self._fd = -1
        # At most one of each is pending: the next poll, the next try to listen.
        self._poll_timer: asyncio.TimerHandle | None = None
        self._listen_timer: asyncio.TimerHandle | None = None
        self._closed = False

    def start(self) -> None:
        """Listen and start polling (on the running loop). Nothing for a single writer."""
        if not self.store.shared:
            return
        self._listen()
        self._poll()

    def _poll(self) -> None:
        if self._closed:
            return
        self.wake()
        self._poll_timer = asyncio.get_running_loop().call_later(POLL_S, self._poll)

    def _listen_later(self) -> None:
        if self._listen_timer is not None:
            self._listen_timer.cancel()
        self._listen_timer = asyncio.get_running_loop().call_later(RELISTEN_S, self._listen)

    def _listen(self) -> None:
        if self._closed:
            return
        try:
            listener = self.store.open_listener()
        except StoreError as exc:
            log.warning("cannot listen for other pools' tasks (polling every %g s meanwhile); "
                        "trying again in %g s: %s", POLL_S, RELISTEN_S, exc)
            self._listen_later()
            return
        if listener is None:
            return
        self._listener, self._fd = listener, listener.fileno()
        asyncio.get_running_loop().add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        listener = self._listener
        if listener is None:
            return
        try:
            woke = listener.drain()
        except StoreError as exc:
            log.warning("lost the connection that listens for other pools' tasks; "
                        "listening again in %g s: %s", RELISTEN_S, exc)
            self._drop()
            self._listen_later()
            self.wake()  # notices may have been missed
            return
        if woke:
            self.wake()

    def _drop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            listener.close()

    def close(self) -> None:
        """Stop listening and polling. Idempotent; call on the loop."""
        self._closed = True
        for timer in (self._poll_timer, self._listen_timer):
            if timer is not None:
                timer.cancel()
        self._poll_timer = self._listen_timer = None
        self._drop()
