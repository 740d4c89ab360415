"""Reading what executors say, and burying them, on real pipes without
processes: the frames are written by the test as an executor would; the
pool (``ResultsOwner``) and the fleet (``ExecutorControl``) are recorders."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from config import Settings
from executor.pool.handout import Handout
from executor.pool.pipes import Pipes
from executor.pool.results import ResultReader
from executor.pool.slots import ExecutorState, Inflight, Slot
from executor.store import TaskRecord
from executor.wire.protocol import FrameReader, FrameType, encode


class Owner:
    """The pool: records every call the reader makes on it."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.calls: list[tuple[Any, ...]] = []
        self.metrics: Any = SimpleNamespace(
            observe_queue=lambda kind, s: self.calls.append(("queue", kind)),
            executor_restarted=lambda reason: self.calls.append(("restarted", reason)))

    def started(self, inf: Inflight) -> None:
        self.calls.append(("started", inf.id))

    def complete(self, inf: Inflight, ok: bool, result: bytes | None,
                 error: dict[str, Any] | None, retry_delay_s: float | None,
                 retryable: bool) -> None:
        self.calls.append(("complete", inf.id, ok, result, error and error["reason"]))

    def release(self, inf: Inflight) -> None:
        self.calls.append(("release", inf.id))

    def schedule_turn(self) -> None:
        pass


class Executors:
    """The fleet: records what the reader asks of it."""

    def __init__(self) -> None:
        self.slots: dict[int, Slot] = {}
        self.manifest: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[Any, ...]] = []

    def top_up(self) -> None:
        self.calls.append(("top_up",))

    def kill(self, slot: Slot, reason: str) -> None:
        slot.kill_reason = slot.kill_reason or reason
        self.calls.append(("kill", reason))

    def signal(self, slot: Slot, sig: int, group: bool) -> None:
        self.calls.append(("signal", sig, group))

    def remove(self, slot: Slot) -> None:
        self.slots.pop(slot.slot_id, None)
        self.calls.append(("remove", slot.slot_id))


class Rig:
    """One executor's pipes (the test holds the executor's ends) and a reader."""

    def __init__(self) -> None:
        self.owner = Owner()
        self.executors = Executors()
        pipes = Pipes()
        self.handout = Handout(self.owner, self.executors, pipes)
        self.reader = ResultReader(self.owner, self.executors, self.handout, pipes)
        task_r, task_w = os.pipe()
        res_r, self.res_w = os.pipe()
        ctl_r, ctl_w = os.pipe()
        steal_fd = os.open(f"/proc/self/fd/{task_r}", os.O_RDONLY | os.O_NONBLOCK)
        for fd in (task_w, res_r, ctl_w):
            os.set_blocking(fd, False)
        self.theirs = [task_r, ctl_r]  # the executor's ends still open
        self.slot = Slot(1, 1, task_w, res_r, steal_fd, FrameReader(), control_fd=ctl_w)
        self.slot.move(ExecutorState.IDLE)
        self.executors.slots[1] = self.slot

    def hand(self, *task_ids: str) -> None:
        recs = [TaskRecord(id=i, kind="k", status="running", attempts=1, max_retries=0,
                           timeout_s=10.0, priority=0, not_before=0.0, created_at=0.0)
                for i in task_ids]
        assert self.handout.hand_out([(self.slot, len(recs))], recs) == []
        self.handout.send()

    def say(self, ftype: FrameType, body: dict[str, Any]) -> None:
        """The executor writes one frame; the pool's loop reads it."""
        os.write(self.res_w, encode(ftype, body))
        self.reader.readable(self.slot)

    def end(self) -> None:
        """The executor exits: its result pipe's EOF."""
        os.close(self.res_w)
        self.res_w = -1
        self.reader.readable(self.slot)

    def close(self) -> None:
        fds = [*self.theirs, self.res_w]
        if not self.slot.eof:
            fds += [self.slot.read_fd, self.slot.write_fd, self.slot.steal_fd,
                    self.slot.control_fd]
        for fd in fds:
            if fd >= 0:
                os.close(fd)


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


def on_loop(step: Callable[[], None]) -> None:
    """Run ``step`` inside an event loop (an EOF removes the pipe's reader)."""
    async def go() -> None:
        step()

    asyncio.run(go())


def test_a_task_that_starts_reports_progress_and_ends_reaches_the_pool(rig: Rig) -> None:
    rig.hand("t")
    rig.say(FrameType.STARTED, {"id": "t"})
    inf = rig.slot.running["t"]
    assert inf.started_at is not None and rig.slot.state is ExecutorState.BUSY
    assert rig.owner.calls == [("started", "t"), ("queue", "k")]
    rig.say(FrameType.PROGRESS, {"id": "t", "value": 0.5, "message": "half"})
    assert inf.progress == {"value": 0.5, "message": "half"}
    rig.say(FrameType.DONE, {"id": "t", "ok": True, "result": b"r", "rss_mb": 12})
    assert rig.owner.calls[-1] == ("complete", "t", True, b"r", None)
    assert rig.slot.state is ExecutorState.IDLE and rig.slot.tasks_run == 1
    assert rig.slot.rss_mb == 12.0 and rig.handout.inflight == {}


def test_an_executor_that_asks_to_leave_hands_its_waiting_tasks_back(rig: Rig) -> None:
    rig.hand("t", "waits")
    rig.say(FrameType.STARTED, {"id": "t"})
    rig.say(FrameType.DONE, {"id": "t", "ok": True, "recycle": "recycled"})
    assert rig.slot.state is ExecutorState.STOPPING and rig.slot.recycle == "recycled"
    assert ("release", "waits") in rig.owner.calls and not rig.slot.waiting
    assert ("top_up",) in rig.executors.calls


@pytest.mark.parametrize("ftype, body", [
    (FrameType.STARTED, {"id": "not-first"}),
    (FrameType.DONE, {"id": "t", "ok": True}),  # never started
    (FrameType.DONE, {"ok": True}),  # no id
])
def test_an_executor_that_breaks_the_protocol_is_killed(rig: Rig, ftype: FrameType,
                                                        body: dict[str, Any]) -> None:
    rig.hand("t")
    rig.say(ftype, body)
    assert rig.executors.calls == [("kill", "crash")]
    assert ("complete", "t", True, None, None) not in rig.owner.calls


def test_a_task_cancelled_while_it_waited_is_stopped_as_it_starts_and_not_completed(
        rig: Rig) -> None:
    rig.hand("t")
    assert rig.handout.cancel_running("t", "api")  # waiting: only marked
    assert rig.executors.calls == []
    rig.say(FrameType.STARTED, {"id": "t"})
    assert rig.executors.calls == [("kill", "cancelled")]  # a def task: its executor
    rig.say(FrameType.DONE, {"id": "t", "ok": True})
    assert [c for c in rig.owner.calls if c[0] == "complete"] == []  # the cancel answered


def test_eof_releases_waiting_tasks_and_a_lone_runner_is_charged_with_the_crash(
        rig: Rig) -> None:
    rig.hand("runs", "waits")
    rig.say(FrameType.STARTED, {"id": "runs"})
    on_loop(rig.end)  # no pid known: buried at once
    assert ("release", "waits") in rig.owner.calls
    assert ("complete", "runs", False, None, "crash") in rig.owner.calls
    assert ("restarted", "crash") in rig.owner.calls
    assert rig.slot.state is ExecutorState.DEAD and rig.handout.inflight == {}
    assert ("remove", 1) in rig.executors.calls and 1 not in rig.executors.slots


def test_a_crash_shared_by_several_tasks_charges_none_and_quarantines_each(
        rig: Rig) -> None:
    rig.hand("a", "b")
    for task_id in ("a", "b"):
        rig.say(FrameType.STARTED, {"id": task_id, "async": True, "concurrency": 2})
    on_loop(rig.end)
    assert [c for c in rig.owner.calls if c[0] in ("release", "complete")] == [
        ("release", "a"), ("release", "b")]
    assert rig.handout.quarantine == {"a", "b"}


def test_burial_waits_for_the_exit_status_and_then_kills_the_crashed_group(
        rig: Rig) -> None:
    rig.hand("runs")
    rig.slot.pid = 4242  # forked: its exit status comes from the template
    rig.say(FrameType.STARTED, {"id": "runs"})
    on_loop(rig.end)
    assert rig.slot.state is ExecutorState.STOPPING  # not buried yet: status unknown
    assert [c for c in rig.owner.calls if c[0] == "complete"] == []
    rig.slot.exit_status = "SIGSEGV"
    rig.reader.bury(rig.slot)  # what ``Fleet.exited`` does when the status comes
    assert ("complete", "runs", False, None, "crash") in rig.owner.calls
    assert ("signal", signal.SIGKILL, True) in rig.executors.calls
    said = (list(rig.owner.calls), list(rig.executors.calls))
    rig.reader.bury(rig.slot)  # the STATUS_WAIT_S timer's late call: nothing more
    assert (rig.owner.calls, rig.executors.calls) == said
