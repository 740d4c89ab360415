"""The executor's loop: take tasks while there is room, run them, report.

An executor is forked from the template and makes its own event loop here,
after fork (the template never starts one). Contract with the pool (frames
of ``executor.wire.protocol``): for each ``RUN`` it takes from its task
pipe it sends ``STARTED`` (in the order taken), any number of ``PROGRESS``,
then exactly one ``DONE``; ``DONE`` frames of concurrent tasks come in the
order the tasks end. ``CANCEL`` frames arrive on a separate control pipe,
so a cancel never waits behind tasks queued in the task pipe.

Who runs beside whom: a task of concurrency ``c`` (``runner.prepare``: 1
for ``def`` tasks) starts only when fewer than ``min(c, c of each running
task)`` tasks run. The executor takes the next frame only while it could
start one more task; a task taken that cannot start yet is *held* (no
``STARTED``, no further frame taken) until it can. So a one-at-a-time task
never runs beside another, and what the executor cannot start soon stays in
the pipe, where the pool can take it back.

``def`` tasks run on the loop's thread, blocking it, which is harmless:
they run alone. ``async def`` tasks run as ``asyncio`` tasks: the soft
limit cancels that task alone, and the cancellation is turned into
``TaskTimeout`` raised inside it at the ``await`` where it waits
(``_soft_limited``); ``CANCEL`` cancels it alone with ``CancelledError``.

Leaving: on EOF of the task pipe, ``STOP`` or SIGTERM the executor takes
no more tasks and exits (``os._exit(0)``) once those running have ended;
so does it after the ``DONE`` that asks to be recycled (``DONE.recycle``).
Any other ending is a crash the pool records.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import time
import types
from collections.abc import Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any, NoReturn

from executor.wire.errors import TaskTimeout
from executor.wire.protocol import FrameReader, FrameType, ProtocolError, encode, write_all
from executor.wire.registry import Registry
from executor.worker import context
from executor.worker.doneframe import done_frame
from executor.worker.frames import EMPTY, take_frame
from executor.worker.limits import Limits, jittered, recycle_reason, rss_mb, setup_process
from executor.worker.runner import (
    Call,
    await_any,
    fail,
    new_done,
    prepare,
    run_sync,
    settle,
    unbound,
)

_Retry = dict[str, tuple[type[BaseException], ...] | None]
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


def run_executor(rfd: int, wfd: int, cfd: int, registry: Registry, limits: Limits) -> NoReturn:
    """Serve ``RUN`` frames from ``rfd`` (and ``CANCEL`` frames from ``cfd``)
    until told to stop; never returns."""
    setup_process(limits)
    os.set_blocking(rfd, False)
    os.set_blocking(cfd, False)
    context.bind(wfd, limits.max_frame_bytes)
    Executor(rfd, wfd, cfd, registry, limits).serve()


class Executor:
    """One executor's state: what runs, what is held, whether it leaves."""

    def __init__(self, rfd: int, wfd: int, cfd: int, registry: Registry,
                 limits: Limits) -> None:
        self.rfd, self.wfd, self.cfd = rfd, wfd, cfd
        self.registry = registry
        self.limits = limits
        self.max_tasks = jittered(limits.max_tasks)
        self.retry_on: _Retry = {}
        self.running: dict[str, Running] = {}
        self.held: Running | None = None
        self.leaving: str | None = None  # why it takes no more tasks
        self.recycle: str | None = None
        self.tasks_run = 0
        self.control = FrameReader(limits.max_frame_bytes)
        self.children: dict[str, set[asyncio.Task[Any]]] = {}  # asyncio tasks a task started
        self.loop = asyncio.new_event_loop()
        self.loop.set_task_factory(self._task_factory)
        self.watching = False  # the task pipe is watched for frames (see pump)
        self.pumping = False  # pump is running (a def task ends inside it)

    def serve(self) -> NoReturn:
        """Run the loop until the executor leaves (``os._exit``)."""
        loop = self.loop
        asyncio.set_event_loop(loop)
        loop.add_signal_handler(signal.SIGTERM, self.leave, "stop")
        loop.add_reader(self.cfd, self.on_control)
        loop.call_soon(self.pump)
        loop.run_forever()
        os._exit(0)  # not reached: leave() exits

    # -- taking tasks ------------------------------------------------------------------

    def _room(self, concurrency: int) -> bool:
        """Whether a task of ``concurrency`` may start beside those running."""
        if not self.running:
            return True
        cap = min(concurrency, *(r.concurrency for r in self.running.values()))
        return len(self.running) < cap

    def _may_take(self) -> bool:
        return self.leaving is None and self.held is None and self._room(1 << 30)

    def pump(self) -> None:
        """Start the held task if it fits now; then take frames while one more
        task could start and none is held. The task pipe is watched only
        while a frame could be taken: a full executor leaves its waiting
        frames alone (the pipe stays readable, and the loop would spin)."""
        self.pumping = True
        try:
            held = self.held
            if held is not None and self.leaving is None and self._room(held.concurrency):
                self.held = None
                self.start(held)
            while self._may_take():
                frame = take_frame(self.rfd, self.limits.max_frame_bytes)
                if frame is EMPTY:
                    break
                if frame is None or frame[0] == FrameType.STOP:
                    self.leave("stop")
                    break
                ftype, desc = frame
                if ftype == FrameType.RUN:
                    self.admit(desc)
        finally:
            self.pumping = False
        self._watch_pipe(self._may_take())

    def _watch_pipe(self, on: bool) -> None:
        if on and not self.watching:
            self.loop.add_reader(self.rfd, self.pump)
        elif not on and self.watching:
            self.loop.remove_reader(self.rfd)
        self.watching = on

    def admit(self, desc: dict[str, Any]) -> None:
        """Start the task of ``desc`` now if it fits beside those running, else hold it."""
        try:
            call: Call | None = prepare(desc, self.registry, self.limits, self.retry_on)
        except BaseException as exc:  # unknown kind, undecodable arguments: report it
            call = None
            entry = Running(desc, None, 1)
            entry.extra = new_done(desc)
            fail(entry.extra, exc, desc["kind"], self.limits, self.retry_on)
            self.start(entry)
            return
        assert call is not None
        entry = Running(desc, call, call.concurrency)
        if self._room(call.concurrency):
            self.start(entry)
        else:
            self.held = entry

    def start(self, entry: Running) -> None:
        """Send ``STARTED`` and run the task (``def``: to its end, right here)."""
        desc, call = entry.desc, entry.call
        task_id = desc["id"]
        self.running[task_id] = entry
        write_all(self.wfd, encode(FrameType.STARTED, {
            "id": task_id, "at": time.time(), "async": bool(call and call.is_async),
            "concurrency": call.kind_concurrency if call is not None else 1}))
        if call is None:
            self.finish(entry, entry.extra)
        elif not call.is_async:
            context.start(task_id)
            try:
                done, _, pending = run_sync(desc, call, self.limits, self.retry_on)
            finally:
                context.start(None)
            if pending is None:
                self.finish(entry, done)
            else:  # a sync wrapper of an async def: await what it returned, still alone
                self._spawn_task(entry, call, pending)
        else:
            self._spawn_task(entry, call, None)

    def _spawn_task(self, entry: Running, call: Call, awaitable: Any) -> None:
        task = self.loop.create_task(self._run_async(entry, call, awaitable))
        entry.task = task
        entry.timer = self.loop.call_later(float(entry.desc["timeout_s"]), self._soft_limit,
                                           entry)
        task.add_done_callback(lambda t: self.finish(entry, t.result()))

    # -- async tasks ---------------------------------------------------------------------

    async def _run_async(self, entry: Running, call: Call, awaitable: Any) -> dict[str, Any]:
        """Run an ``async def`` task (or the ``awaitable`` a ``def`` one returned)
        in its own ``asyncio`` task; never raises."""
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

    def on_control(self) -> None:
        """Read ``CANCEL`` frames from the control pipe."""
        try:
            data = os.read(self.cfd, 65536)
        except BlockingIOError:
            return
        if not data:
            self.loop.remove_reader(self.cfd)
            return
        try:
            frames = list(self.control.feed(data))
        except ProtocolError:
            os._exit(70)  # a broken control channel: the pool records a crash
        for ftype, body in frames:
            entry = self.running.get(str(body.get("id")))
            if ftype == FrameType.CANCEL and entry is not None and entry.task is not None:
                entry.cancelled = True
                entry.task.cancel("cancelled on request")

    # -- ending ----------------------------------------------------------------------------

    def finish(self, entry: Running, done: dict[str, Any]) -> None:
        """Report a task's end, start the held task if it fits now, maybe leave."""
        if entry.timer is not None:
            entry.timer.cancel()
        self.running.pop(entry.desc["id"], None)
        self.tasks_run += 1
        rss = rss_mb()
        asynchronous = entry.call is not None and entry.call.is_async
        self.recycle = self.recycle or recycle_reason(done, rss, self.limits, self.tasks_run,
                                                      self.max_tasks, asynchronous)
        if self.recycle and self.leaving is None:
            self.leaving = self.recycle
        done["rss_mb"] = round(rss, 1)
        done["recycle"] = self.recycle
        write_all(self.wfd, done_frame(done, self.limits.max_frame_bytes,
                                       self.limits.max_result_bytes))
        if self.leaving is not None:
            self._exit_if_done()
        elif not self.pumping:  # else the pump running now (a def task's) goes on
            self.loop.call_soon(self.pump)

    def leave(self, why: str) -> None:
        """Take no more tasks; exit once those running have ended. A held task
        never started: the pool hands it out again when this executor is gone."""
        if self.leaving is None:
            self.leaving = why
        self._exit_if_done()

    def _exit_if_done(self) -> None:
        if not self.running:
            os._exit(0)


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
