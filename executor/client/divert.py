"""Where hand-offs go instead of the pool while a test mode of ``executor.testing`` is on.

``handler`` is ``None`` unless a test entered ``executor.testing.inline()``
or ``fake()``; nothing else sets it (no import, no environment variable).
``BackgroundTasks.__call__`` reads it once per hand-off, the only cost of
test modes on the production path. Process-wide on purpose: Starlette's
``TestClient`` runs the app in a thread of its own, which a context
variable set in the test would not reach.
"""

from __future__ import annotations

from typing import Any, Protocol

from config.settings import Settings


class Handler(Protocol):
    """What a test mode does instead of the outbox (hand-offs) and of offload's
    HTTP API (``server.Client``, through ``server.inprocess``)."""

    name: str

    async def hand_off(self, specs: list[dict[str, Any]], settings: Settings | None,
                       ids: list[str]) -> None:
        """Take the submit specs of one hand-off (as the pool would receive
        them), in order; append each call's task id to ``ids`` as soon as it
        has one; raise to fail the hand-off (after every call was taken)."""

    def submit(self, specs: list[dict[str, Any]],
               settings: Settings | None = None) -> list[str]:
        """Take tasks submitted by kind, as the pool takes a ``submit``;
        their ids. Raises the ``PoolError`` the pool would answer."""

    def record(self, task_id: str) -> dict[str, Any]:
        """A task's record as the pool sends it. Raises ``PoolError`` ``not_found``."""

    def cancel(self, task_id: str, force: bool = False) -> dict[str, Any]:
        """Cancel a task; its record. Raises ``PoolError`` ``not_found`` or ``conflict``."""


handler: Handler | None = None
"""The test mode on, or ``None`` (always, in production)."""
