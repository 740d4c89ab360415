"""``BackgroundTasks``: the FastAPI/Starlette ``add_task`` API, run durably by offload.

::

    from executor import BackgroundTasks

    tasks = BackgroundTasks()
    tasks.add_task(send_email, user.email, subject="Welcome")
    tasks.add_task(audit, "signup", user.id)
    return JSONResponse({"id": user.id}, status_code=201, background=tasks)

Contract:

- ``add_task(fn, *args, **kwargs)`` checks the call at once and raises
  ``TypeError`` saying why and what to do if an executor could not make it:
  ``fn`` must be a module-level function (sync or ``async def``) importable
  by its module path, so no lambdas, closures, bound methods of instances
  or functions of ``__main__``; the arguments must fit ``fn``'s signature,
  be encodable (``executor.wire.codec``; the message names the argument) and,
  encoded, fit in half of ``max_frame_bytes``; its ``@task`` options must be
  within their settings' bounds. The calls of one
  ``BackgroundTasks`` too large for one submit go in several, in order.
- Each call becomes one task, with its own record, id and retries. Its kind
  is the ``@task`` kind when ``fn`` is registered, else ``module.qualname``
  (sent with ``ref="module:qualname"``, so any importable function works).
  An ``async def`` function's calls share executors as a registered kind's
  do (its ``@task(concurrency=)``, else the ``async_concurrency`` setting):
  the spec tells the pool, which never imports the function.
- The calls of one ``BackgroundTasks`` run in the order added, one after
  another: a call starts once the previous one has finished, retries
  included; one that fails for good does not stop the next.
- ``await tasks()`` hands every pending call to this process's outbox
  (``executor.client.outbox``) and returns at once: nothing waits for the pool
  after the response. The outbox stores the calls of many requests in one
  submit, within a round trip, and keeps them, re-sending while the pool is
  unreachable, until they are stored; each carries an idempotency key, so
  nothing is stored twice. Until stored, calls live in this process's
  memory only: a worker killed in that millisecond or so loses them, as it
  would lose Starlette's own tasks. ``task_ids`` fills in as they are stored.
- ``await tasks.submit()`` does the same and waits until they are stored,
  returning their ids; for routes that answer with an id, or must know the
  calls are durable before they answer.

Inside ``executor.testing.inline()`` or ``fake()`` (tests of your app) a
hand-off runs or records the calls in this process instead; see there.

Starlette runs ``Response(background=tasks)`` after sending the response, so
that is when the calls are handed off; for FastAPI's dependency injection
use ``server.fastapi.OffloadTasks``. offload's HTTP app drains the outbox at
shutdown; anywhere else, ``await executor.drain_background()`` at shutdown.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, Protocol

from config.settings import Settings
from executor.client import divert
from executor.client.calls import PreparedCall, prepare
from executor.client.shared import default_settings, shared_outbox
from executor.wire.errors import PoolUnavailable

P = ParamSpec("P")

STORE_TIMEOUT_S = 5.0
"""How long ``submit()`` waits by default for its calls to be stored (the
pool is respawned within seconds)."""


class CallLike(Protocol):
    """A Starlette/Lilya-style ``BackgroundTask``: a function and its arguments."""

    @property
    def func(self) -> Callable[..., Any]: ...
    @property
    def args(self) -> Sequence[Any]: ...
    @property
    def kwargs(self) -> Mapping[str, Any]: ...


class _GroupIds:
    """This process's group ids: a random tag drawn at start and after every
    fork (gunicorn's workers are forked), then a counter: unique without a
    system call per ``BackgroundTasks`` (``os.urandom`` each time cost more
    than the rest of ``BackgroundTasks()``)."""

    tag = ""
    count = itertools.count()

    @classmethod
    def renew(cls) -> None:
        cls.tag = os.urandom(6).hex()
        cls.count = itertools.count()


_GroupIds.renew()
os.register_at_fork(after_in_child=_GroupIds.renew)


def _group_id() -> str:
    """32 hex digits: milliseconds since the epoch, this process's 48-bit
    random tag, then a 32-bit counter.

    Time-ordered, so the store's group and idempotency-key indexes grow at
    their right edge instead of at random pages. Two ids are equal only if
    two processes drew the same tag and reached the same count within the
    same millisecond.
    """
    return (f"{time.time_ns() // 1_000_000:012x}{_GroupIds.tag}"
            f"{next(_GroupIds.count) & 0xFFFFFFFF:08x}")


_LARGE_PAYLOAD = 64 * 1024  # arguments this small are never checked against the frame limit
_SPEC_OVERHEAD = 1024  # a call's submit spec beside its payload, generously


class BackgroundTask:
    """One call ``func(*args, **kwargs)``, checked when made (as ``add_task`` checks).

    Shaped like Starlette's ``BackgroundTask``: ``Response(background=task)``
    hands it off alone after the response; ``task_id`` is set once stored.
    """

    def __init__(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self._call = prepare(func, args, kwargs)
        self._tasks = BackgroundTasks([self])

    @property
    def task_id(self) -> str | None:
        """The call's task id once stored, else ``None``."""
        return self._tasks.task_ids[0] if self._tasks.task_ids else None

    async def __call__(self) -> None:
        """Hand this call off, as ``BackgroundTasks.__call__`` does."""
        await self._tasks()

    async def submit(self, timeout_s: float = STORE_TIMEOUT_S) -> str:
        """Hand this call off and return its id once stored; raises as
        ``BackgroundTasks.submit`` does."""
        return (await self._tasks.submit(timeout_s))[0]


class BackgroundTasks:
    """Calls to run in executors after the response, in order; see the module docstring.

    ``tasks`` are ``BackgroundTask``-shaped objects (offload's, Starlette's,
    Lilya's: anything with ``func``, ``args`` and ``kwargs``), added in
    order. ``settings`` pick the pool; by default the one of the offload
    app serving this process (``executor.client.shared.default_settings``).

    ``len()`` counts every call added; ``pending_count()`` those not yet
    stored; ``task_ids`` holds the ids of the stored ones, in order.
    Not for concurrent use by several coroutines.
    """

    def __init__(self, tasks: Sequence[CallLike] | None = None, *,
                 settings: Settings | None = None) -> None:
        self.settings = settings
        self.group_id = _group_id()
        self.task_ids: list[str] = []
        self._pending: list[tuple[int, PreparedCall]] = []  # added, not yet handed off
        self._handed: list[asyncio.Future[list[str]]] = []  # handed off, not yet stored
        self._handed_calls = 0
        self._added = 0
        for t in tasks or ():
            if isinstance(t, BackgroundTask):
                self._append(t._call)
            elif all(hasattr(t, a) for a in ("func", "args", "kwargs")):
                self._append(prepare(t.func, t.args, t.kwargs))
            else:
                raise TypeError(f"BackgroundTasks() takes BackgroundTask(fn, *args, **kwargs) "
                                f"objects, got {type(t).__name__}")

    def add_task(self, fn: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
        """Add the call ``fn(*args, **kwargs)``. Raises ``TypeError`` if an executor
        could not make it (see the module docstring); nothing is added then."""
        self._append(prepare(fn, args, kwargs))

    def _append(self, call: PreparedCall) -> None:
        if len(call.payload) > _LARGE_PAYLOAD:
            limit = (self.settings or default_settings()).max_frame_bytes // 2 - _SPEC_OVERHEAD
            if len(call.payload) > limit:
                raise TypeError(
                    f"add_task({call.ref}): its arguments are {len(call.payload)} bytes "
                    f"encoded, over the {limit} one call may carry (half of max_frame_bytes); "
                    "store large data elsewhere (a file, object storage) and pass a reference")
        self._pending.append((self._added, call))
        self._added += 1

    def __len__(self) -> int:
        return self._added

    def pending_count(self) -> int:
        """Calls added but not yet stored by the pool."""
        return len(self._pending) + self._handed_calls

    def __repr__(self) -> str:
        return (f"<BackgroundTasks group={self.group_id} added={self._added} "
                f"pending={self.pending_count()}>")

    def _spec(self, seq: int, call: PreparedCall) -> dict[str, Any]:
        spec: dict[str, Any] = {"kind": call.kind, "payload": call.payload, "ref": call.ref,
                                "group_id": self.group_id, "seq": seq,
                                "idempotency_key": f"bg:{self.group_id}:{seq}"}
        spec.update(call.options)
        return spec

    async def __call__(self) -> None:
        """Hand every pending call to the outbox and return (see the module docstring).

        Waits only while the outbox is full (``executor.client.outbox``).
        """
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        specs = [self._spec(seq, call) for seq, call in batch]
        if divert.handler is not None:  # a test mode of executor.testing is on
            await divert.handler.hand_off(specs, self.settings, self.task_ids)
            return
        try:
            outbox = shared_outbox(self.settings)
            # No coroutine to await while there is room: this runs once per request.
            parts = await outbox.put(specs) if outbox.full() else outbox.offer(specs)
        except BaseException:
            self._pending[:0] = batch
            raise
        for stored, n in parts:
            self._handed.append(stored)
            self._handed_calls += n
            stored.add_done_callback(functools.partial(self._stored, n))

    def _stored(self, n: int, fut: asyncio.Future[list[str]]) -> None:
        # The outbox sets its futures in the order queued: task_ids keeps the
        # order the calls were added in.
        self._handed_calls -= n
        if not fut.cancelled() and fut.exception() is None:
            self.task_ids.extend(fut.result())

    async def submit(self, timeout_s: float = STORE_TIMEOUT_S) -> list[str]:
        """Hand off the pending calls and wait until every call handed off is
        stored; returns ``task_ids``.

        Raises ``PoolUnavailable`` if they are not stored within ``timeout_s``
        (they stay queued in this process and are stored once the pool is
        back, never twice), or the ``PoolError`` with which the pool refused
        one (that call is dropped).
        """
        await self()
        waiting = [f for f in self._handed if not f.done()]
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=timeout_s)
            if late:
                raise PoolUnavailable(
                    f"{self._handed_calls} background call(s) were not stored within "
                    f"{timeout_s} s; they stay queued in this process and are stored once "
                    "the pool is back")
        handed, self._handed = self._handed, []
        for fut in handed:
            error = None if fut.cancelled() else fut.exception()
            if error is not None:
                raise error
        return list(self.task_ids)
