"""The ``async def`` calls running on an executor's event loop, each in its
own ``asyncio`` task.

The executor's loop (``executor.worker.aio``) decides what starts when, and
hands this module each call that must run as an ``asyncio`` task: an
``async def`` task, or the awaitable a ``def`` task returned (a sync wrapper
of an ``async def``, still alone in its executor). For each, ``AsyncCalls``:

- runs it under its soft time limit (the descriptor's ``timeout_s``): the
  limit cancels that call alone, and the cancellation is turned into
  ``TaskTimeout`` raised inside it at the ``await`` where it waits
  (``_soft_limited``), so ``except TaskTimeout`` cleans up as in a ``def``
  task;
- cancels it alone on the pool's request (``cancel``, for ``CANCEL``): it
  ends with a ``CancelledError``, recorded as not retryable;
- remembers the ``asyncio`` tasks it starts (the loop's task factory) and
  cancels those left running when it returns, as ``asyncio.run`` does, giving
  them ``CHILDREN_WAIT_S`` to end; its neighbours' are theirs;
- hands its ``DONE`` body to the executor (``on_end``) when it ends; a call
  never raises out of its ``asyncio`` task.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import types
from collections.abc import Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from executor.wire.errors import TaskTimeout
from executor.worker import context
from executor.worker.limits import Limits
from executor.worker.runner import Call, await_any, fail, new_done, settle, unbound

__all__ = ["CHILDREN_WAIT_S", "AsyncCalls", "Running"]

CHILDREN_WAIT_S = 1.0  # how long the tasks a task left running get to end once cancelled


@dataclass(eq=False)
class Running:
    """A task that started in this executor and has not ended."""

    desc: dict[str, Any]
    call: Call | None  # None: it could not be prepared (its DONE carries why)
    concurrency: int
    task: asyncio.Task[dict[str, Any]] | None = None
    timer: asyncio.TimerHandle | None = None
    timed_out: bool = False  # the soft limit passed: cancellation means TaskTimeout
    cancelled: bool = False  # cancelled on the pool's request (CANCEL)
    extra: dict[str, Any] = field(default_factory=dict)


class AsyncCalls:
    """The ``asyncio`` tasks of one executor's calls, on its ``loop`` (whose task
    factory it installs). ``running`` is the executor's map of started tasks by
    id: only a call in it owns the ``asyncio`` tasks it starts, and only one in
    it can be cancelled. Used from the loop's thread only."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: Limits,
                 retry_on: dict[str, tuple[type[BaseException], ...] | None],
                 running: Mapping[str, Running],
                 on_end: Callable[[Running, dict[str, Any]], None]) -> None:
        self.loop = loop
        self.limits = limits
        self.retry_on = retry_on  # each kind's retry_on, shared with the executor
        self.running = running
        self.on_end = on_end
        self.children: dict[str, set[asyncio.Task[Any]]] = {}  # asyncio tasks a task started
        loop.set_task_factory(self._task_factory)

    def spawn(self, entry: Running, call: Call, awaitable: Any) -> None:
        """Run ``call`` (or, if not ``None``, the ``awaitable`` its function
        returned) in an ``asyncio`` task of its own, under the soft limit;
        ``on_end(entry, done)`` once it has ended (from a later loop step)."""
        task = self.loop.create_task(self._run(entry, call, awaitable))
        entry.task = task
        entry.timer = self.loop.call_later(float(entry.desc["timeout_s"]), self._soft_limit,
                                           entry)
        task.add_done_callback(lambda t: self._ended(entry, t.result()))

    def cancel(self, task_id: str) -> None:
        """Cancel the call ``task_id`` on the pool's request (``CANCEL``);
        nothing if it is not running here or not in an ``asyncio`` task."""
        entry = self.running.get(task_id)
        if entry is not None and entry.task is not None:
            entry.cancelled = True
            entry.task.cancel("cancelled on request")

    def _ended(self, entry: Running, done: dict[str, Any]) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
        self.on_end(entry, done)

    async def _run(self, entry: Running, call: Call, awaitable: Any) -> dict[str, Any]:
        """The call's ``asyncio`` task: its ``DONE`` body; never raises."""
        desc = entry.desc
        done = new_done(desc)
        context.start(desc["id"])  # this asyncio task's own context
        try:
            if awaitable is not None:
                coro = awaitable if inspect.iscoroutine(awaitable) else await_any(awaitable)
            else:
                try:
                    coro = call.fn(*call.args, **call.kwargs)
                except TypeError as exc:  # the call did not bind (or the function raised)
                    if unbound(done, call.fn, call, exc):
                        return done
                    raise
            value = await _soft_limited(coro, entry)
            settle(done, value, self.limits)
        except BaseException as exc:  # CancelledError included: this task alone ends
            if isinstance(exc, asyncio.CancelledError) and entry.timed_out and not entry.cancelled:
                exc = TaskTimeout("soft time limit exceeded")
            fail(done, exc, desc["kind"], self.limits, self.retry_on)
            if entry.cancelled:
                done["retryable"] = False
                done["error"]["message"] = "cancelled on request: " + done["error"]["message"]
        # Cancelled again while its children end: it has ended anyway.
        with contextlib.suppress(asyncio.CancelledError):
            await self._cancel_children(desc["id"])
        return done

    def _task_factory(self, loop: asyncio.AbstractEventLoop, coro: Any,
                      **kwargs: Any) -> asyncio.Task[Any]:
        """Make an ``asyncio`` task, remembering which offload task started it."""
        task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, **kwargs)
        owner = context.current_task_id()
        if owner is not None and owner in self.running:
            kids = self.children.setdefault(owner, set())
            kids.add(task)
            task.add_done_callback(kids.discard)
        return task

    async def _cancel_children(self, task_id: str) -> None:
        """Cancel what the task left running when it returned, as ``asyncio.run``
        does (its neighbours' tasks are theirs), and give them ``CHILDREN_WAIT_S``
        to end."""
        kids = self.children.pop(task_id, set())
        for kid in kids:
            kid.cancel()
        if kids:
            await asyncio.wait(kids, timeout=CHILDREN_WAIT_S)

    def _soft_limit(self, entry: Running) -> None:
        entry.timer = None
        if entry.task is not None and not entry.task.done():
            entry.timed_out = True
            entry.task.cancel("soft time limit exceeded")


@types.coroutine
def _soft_limited(coro: Coroutine[Any, Any, Any], entry: Running) -> Generator[Any, Any, Any]:
    """Await ``coro``, turning the soft limit's cancellation into ``TaskTimeout``
    raised inside it, where it waits, so ``except TaskTimeout`` cleans up in
    an ``async def`` task as it does in a ``def`` one. Every other value and
    exception passes through unchanged."""
    send: Any = None
    throw: BaseException | None = None
    while True:
        try:
            yielded = coro.send(send) if throw is None else coro.throw(throw)
        except StopIteration as stop:
            return stop.value
        send, throw = None, None
        try:
            send = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except asyncio.CancelledError as exc:
            if entry.timed_out and not entry.cancelled:
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()  # handled here: not a cancellation of the asyncio task
                throw = TaskTimeout("soft time limit exceeded")
            else:
                throw = exc
        except BaseException as exc:
            throw = exc
