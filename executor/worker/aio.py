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
they run alone. ``async def`` tasks run as ``asyncio`` tasks
(``executor.worker.asynccalls``: the soft limit and ``CANCEL`` end that
task alone, and the ``asyncio`` tasks it left running are cancelled).

Leaving: on EOF of the task pipe, ``STOP`` or SIGTERM the executor takes
no more tasks and exits (``os._exit(0)``) once those running have ended;
so does it after the ``DONE`` that asks to be recycled (``DONE.recycle``).
Any other ending is a crash the pool records.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any, NoReturn

from executor.wire.protocol import FrameReader, FrameType, ProtocolError, encode, write_all
from executor.wire.registry import Registry
from executor.worker import context
from executor.worker.asynccalls import AsyncCalls, Running
from executor.worker.doneframe import done_frame
from executor.worker.frames import EMPTY, take_frame
from executor.worker.limits import Limits, jittered, recycle_reason, rss_mb, setup_process
from executor.worker.runner import Call, fail, new_done, prepare, run_sync

_Retry = dict[str, tuple[type[BaseException], ...] | None]


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
        self.loop = asyncio.new_event_loop()
        self.calls = AsyncCalls(self.loop, limits, self.retry_on, self.running, self.finish)
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
                self.calls.spawn(entry, call, pending)
        else:
            self.calls.spawn(entry, call, None)

    # -- cancels ------------------------------------------------------------------------

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
            if ftype == FrameType.CANCEL:
                self.calls.cancel(str(body.get("id")))

    # -- ending ----------------------------------------------------------------------------

    def finish(self, entry: Running, done: dict[str, Any]) -> None:
        """Report a task's end, start the held task if it fits now, maybe leave."""
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
