"""One pool client per process and event loop, shared by everything in it.

The HTTP worker's offload routes (``server.pool.PoolLink``) and every
``BackgroundTasks`` flushed in that worker call ``shared_client``, so a
worker holds one pipelined connection to the pool, whatever it serves.

A client is made on first use *inside the running loop* (never at import,
never in a process about to fork) and belongs to that loop: another loop
gets its own, and a loop that is garbage-collected takes its clients with
it. A forked child starts with no clients at all.

Each client has an ``Outbox`` (``shared_outbox``) where ``BackgroundTasks``
hand off their calls; ``drain_background`` waits until they are stored.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import weakref

from config.paths import socket_path_for
from config.settings import Settings, load_settings
from executor.client.client import PoolClient
from executor.client.outbox import Outbox

log = logging.getLogger("offload.background")

# loop -> socket path -> outbox (which holds the client). Weak on the loop:
# tests make and drop loops.
_outboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Outbox]] = (
    weakref.WeakKeyDictionary()
)
def _forked() -> None:
    """In a forked child: the parent's clients and outboxes are not ours."""
    _outboxes.clear()


os.register_at_fork(after_in_child=_forked)
_default: Settings | None = None
# id(settings) -> (settings, socket path): socket_path_for hashes a path, and
# BackgroundTasks ask for every flush. Settings objects are few and long-lived.
_paths: dict[int, tuple[Settings, str]] = {}
_MAX_PATHS = 64


def use_settings(settings: Settings) -> None:
    """Make ``settings`` this process's default for ``shared_client()``.

    offload's HTTP app calls this with its own settings, so a
    ``BackgroundTasks()`` in a route served beside it talks to the same pool
    even when the app was built with ``create_app(settings)``.
    """
    global _default
    _default = settings


def default_settings() -> Settings:
    """The settings given to ``use_settings``, else ``load_settings()`` (loaded once).

    Raises ``ConfigError`` if the settings cannot be loaded.
    """
    global _default
    if _default is None:
        _default = load_settings()
    return _default


def shared_client(settings: Settings | None = None) -> PoolClient:
    """This process's ``PoolClient`` for ``settings``' pool, on the running loop.

    ``settings`` default to ``default_settings()``. Made on first use and
    cached per (socket path, loop); nothing connects until its first call.
    Raises ``RuntimeError`` outside a running event loop.
    """
    return shared_outbox(settings).client


def shared_outbox(settings: Settings | None = None) -> Outbox:
    """This process's ``Outbox`` for ``settings``' pool, on the running loop,
    made on first use with the shared client it sends through. Raises
    ``RuntimeError`` outside a running event loop.
    """
    loop = asyncio.get_running_loop()
    if settings is None:
        settings = default_settings()
    path = _socket_path(settings)
    per_loop = _outboxes.get(loop)
    if per_loop is None:
        per_loop = _outboxes[loop] = {}
    outbox = per_loop.get(path)
    if outbox is None:
        outbox = per_loop[path] = Outbox(PoolClient(path, settings.max_frame_bytes))
    return outbox


async def drain_background(timeout_s: float = 10.0) -> int:
    """Wait until the background calls handed off on this loop are stored.

    Waits at most ``timeout_s`` in all; returns how many calls are still
    waiting (and logs them as an error when there are any). offload's HTTP
    app calls this at shutdown; call it in your own app's shutdown when it
    runs outside offload's server.
    """
    loop = asyncio.get_running_loop()
    left = 0
    deadline = loop.time() + timeout_s
    for outbox in list(_outboxes.get(loop, {}).values()):
        left += await outbox.drain(max(0.0, deadline - loop.time()))
    if left:
        log.error("%d background call(s) were not stored within %g s and will be lost "
                  "when this process exits", left, timeout_s)
    return left


def queued_background() -> int:
    """Background calls handed off in this process and not yet stored."""
    return sum(o.queued_calls() for per_loop in list(_outboxes.values())
               for o in per_loop.values())


@atexit.register
def _report_lost() -> None:
    left = queued_background()
    if left:  # a forked child forgot its parent's (_forked)
        log.error("exiting with %d background call(s) not stored: they are lost "
                  "(await executor.drain_background() at shutdown; in tests of your app, "
                  "where no pool runs, enter executor.testing.inline() or fake())", left)


def _socket_path(settings: Settings) -> str:
    known = _paths.get(id(settings))
    if known is not None and known[0] is settings:
        return known[1]
    if len(_paths) >= _MAX_PATHS:
        _paths.clear()
    path = socket_path_for(settings)
    _paths[id(settings)] = (settings, path)
    return path
