"""The ASGI ``lifespan`` protocol for offload, shared with a mounted user app.

offload starts first and stops last. The user app (if any) gets the same
lifespan scope, over queues: its startup must complete before offload
reports ``lifespan.startup.complete``, and its shutdown before
``lifespan.shutdown.complete``. A user app that does not speak lifespan (it
raises or returns without answering) is ignored, as uvicorn does; one that
answers ``startup.failed``/``shutdown.failed`` makes the whole app fail so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from server.http import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("offload.server")

Hook = Callable[[], Awaitable[None]]


async def _reply(user: asyncio.Future[None], replies: asyncio.Queue[Message]) -> Message | None:
    """The user app's next message, or ``None`` if it ended without one."""
    getter = asyncio.ensure_future(replies.get())
    try:
        await asyncio.wait((getter, user), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getter.done():
            getter.cancel()
    if getter.done() and not getter.cancelled():
        return getter.result()
    if not replies.empty():
        return replies.get_nowait()
    exc = None if user.cancelled() else user.exception()
    if exc is not None:
        log.info("the mounted app does not support lifespan (%s: %s); ignored",
                 type(exc).__name__, exc)
    return None


async def run(scope: Scope, receive: Receive, send: Send, *, startup: Hook, shutdown: Hook,
              user_app: ASGIApp | None) -> None:
    """Serve one lifespan scope: offload's ``startup``/``shutdown`` hooks around the user's."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    replies: asyncio.Queue[Message] = asyncio.Queue()
    user: asyncio.Future[None] | None = None
    if user_app is not None:
        user = asyncio.ensure_future(user_app(scope, inbox.get, replies.put))
    try:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        try:
            await startup()
        except Exception as exc:
            log.exception("offload failed to start")
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        if user is not None:
            await inbox.put(message)
            answer = await _reply(user, replies)
            if answer is None:
                user = None
            elif answer["type"] == "lifespan.startup.failed":
                await shutdown()
                await send({"type": "lifespan.startup.failed",
                            "message": answer.get("message", "")})
                return
        await send({"type": "lifespan.startup.complete"})

        message = await receive()
        failed: str | None = None
        if user is not None:
            await inbox.put(message)
            answer = await _reply(user, replies)
            if answer is not None and answer["type"] == "lifespan.shutdown.failed":
                failed = answer.get("message", "")
        try:
            await shutdown()
        except Exception as exc:
            log.exception("offload failed to shut down cleanly")
            failed = failed or str(exc)
        if failed is None:
            await send({"type": "lifespan.shutdown.complete"})
        else:
            await send({"type": "lifespan.shutdown.failed", "message": failed})
    finally:
        if user is not None and not user.done():
            user.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await user
