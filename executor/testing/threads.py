"""Running a test mode's calls in a thread of their own.

An ``async def`` call needs an event loop of its own, as in an executor, and
the hand-off that runs it is itself awaited on the app's loop: so calls run
in a new thread, in a fresh ``contextvars`` context (they see no context
variable of the request that added them, as in an executor).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import Any


def _target(fn: Callable[..., None], args: tuple[Any, ...],
            done: Callable[[BaseException | None], None]) -> Callable[[], None]:
    def target() -> None:
        try:
            contextvars.Context().run(fn, *args)
        except BaseException as exc:  # the runners do not raise; report it anyway
            done(exc)
        else:
            done(None)
    return target


async def in_thread(fn: Callable[..., None], *args: Any) -> None:
    """Run ``fn(*args)`` in a new thread; wait for it without blocking the loop."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def done(exc: BaseException | None) -> None:
        def settle() -> None:
            if ended.done():
                return
            if exc is None:
                ended.set_result(None)
            else:
                ended.set_exception(exc)
        loop.call_soon_threadsafe(settle)

    threading.Thread(target=_target(fn, args, done), name="offload-test-calls",
                     daemon=True).start()
    await ended


def join_thread(fn: Callable[..., None], *args: Any) -> None:
    """Run ``fn(*args)`` in a new thread and block until it ends (also inside
    a running event loop, which it blocks meanwhile)."""
    errors: list[BaseException] = []

    def done(exc: BaseException | None) -> None:
        if exc is not None:
            errors.append(exc)

    thread = threading.Thread(target=_target(fn, args, done), name="offload-test-calls",
                              daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
