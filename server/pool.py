"""The HTTP worker's link to the pool: a lazy ``PoolClient`` and the metrics shipper.

One ``PoolLink`` per app. Its client is the process's shared one
(``executor.client.shared.shared_client``), so the worker's offload routes and the
``BackgroundTasks`` of the app served beside them use one connection. It is
made on first use *inside the running event loop* (never at import or in the
gunicorn master, whose loop-less fork would share a socket), and another
loop (tests) gets another client. At shutdown the link first waits (up to
``DRAIN_TIMEOUT_S``) until the background calls handed off in this worker
are stored (``executor.drain_background``). The shipper hands the buffered HTTP
observations to the pool (op ``observe_http``) about every second, and once
more on ``stop``; a failed shipment is dropped, never retried and never
surfaced to a request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from config.paths import socket_path_for
from config.settings import Settings
from executor.client.client import PoolClient
from executor.client.shared import drain_background, shared_client, use_settings
from executor.wire.errors import PoolError, PoolUnavailable
from metrics import HttpObservations
from server.errors import from_pool_error, from_pool_unavailable

log = logging.getLogger("offload.server")

SHIP_INTERVAL_S = 1.0
SHIP_TIMEOUT_S = 5.0
STOP_STEP_S = 1.0  # each step of the worker's shutdown (last ship, close)
DRAIN_TIMEOUT_S = 10.0  # background calls still queued in the worker's outbox


class PoolLink:
    """Lazy, per-loop pool client plus the periodic ``observe_http`` shipper.

    ``call_timeout_s`` bounds every ordinary call: a pool that hangs turns
    into 503s, not into requests that never end.
    """

    def __init__(self, settings: Settings, observations: HttpObservations) -> None:
        self.settings = settings
        self.path = socket_path_for(settings)
        self.call_timeout_s = settings.http_timeout_s
        self.observations = observations
        self._client: PoolClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shipper: asyncio.Task[None] | None = None
        # BackgroundTasks() made in this process submit to this app's pool.
        use_settings(settings)

    def client(self) -> PoolClient:
        """This loop's shared client; the shipper starts on first use in a loop."""
        loop = asyncio.get_running_loop()
        client = self._client
        if client is None or self._loop is not loop:
            client = self._client = shared_client(self.settings)
            self._loop = loop
            self._shipper = loop.create_task(self._ship_forever(), name="offload-observe-http")
        return client

    def start(self) -> None:
        """Make the client and start shipping now (lifespan startup)."""
        self.client()

    async def call(self, op: str, args: dict[str, Any] | None = None, *,
                   timeout_s: float | None = None, field_prefix: str | None = None) -> Any:
        """The pool's result for ``op``, or ``ApiError`` (503 unreachable, or
        the pool's refusal mapped to 404/409/413/422/500)."""
        try:
            return await self.client().call(op, args, timeout_s or self.call_timeout_s)
        except PoolError as exc:
            raise from_pool_error(exc, field_prefix) from None
        except PoolUnavailable as exc:
            raise from_pool_unavailable(exc) from None

    async def ship(self) -> None:
        """Send the buffered observations to the pool; drop them on any failure."""
        samples = self.observations.drain()
        if not samples or self._client is None:
            return
        try:
            await self._client.call("observe_http", {"samples": samples}, SHIP_TIMEOUT_S)
        except Exception as exc:  # metrics must never hurt requests
            log.debug("dropped %d HTTP observations: %s", len(samples), exc)

    async def _ship_forever(self) -> None:
        while True:
            await asyncio.sleep(SHIP_INTERVAL_S)
            await self.ship()

    async def stop(self) -> None:
        """Store the worker's queued background calls, stop the shipper, ship
        what is left, close the client. Idempotent.

        Closing the shared client is safe: anyone calling it later reconnects.
        """
        shipper, self._shipper = self._shipper, None
        same_loop = self._loop is asyncio.get_running_loop()
        if shipper is not None and not shipper.done():
            # Cancelled, not awaited: under gunicorn's asgi worker, awaiting it
            # here (its sleep already over) stalled until the worker's 30 s
            # lifespan timeout woke the loop. The last ship below does its job.
            shipper.cancel()
        if same_loop:
            await drain_background(DRAIN_TIMEOUT_S)
        if self._client is not None and same_loop:
            # Bounded: a worker must never hang in shutdown because the pool is
            # gone or slow (gunicorn would wait out its lifespan timeout, 30 s).
            for step in (self.ship, self._client.close):
                try:
                    await asyncio.wait_for(step(), STOP_STEP_S)
                except (TimeoutError, OSError) as exc:
                    log.debug("offload shutdown step %s gave up: %r", step.__name__, exc)
        self._client = None
        self._loop = None
