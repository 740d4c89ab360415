"""Handing claimed tasks to executors, taking them back and cancelling them,
on real pipes without processes: the pool (``HandoutOwner``) and the fleet
(``Executors``) behind their seams are recorders."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from config import Settings
from executor.pool.handout import LEASE_TAKEN, REBALANCE_AFTER_S, STEAL_AFTER_S, Handout
from executor.pool.pipes import Pipes
from executor.pool.slots import Inflight, Slot
from executor.store import TaskRecord
from executor.wire.protocol import FrameReader, FrameType

ASYNC_MANIFEST = {"aio": {"async": True, "concurrency": 5}}


class Owner:
    """The pool: records the tasks released back to pending."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.released: list[str] = []

    def release(self, inf: Inflight) -> None:
        self.released.append(inf.id)


class Executors:
    """The fleet: the slots the hand-out may write to, and the kills it asks for."""

    def __init__(self) -> None:
        self.slots: dict[int, Slot] = {}
        self.manifest: dict[str, dict[str, Any]] = dict(ASYNC_MANIFEST)
        self.killed: list[tuple[int, str]] = []

    def kill(self, slot: Slot, reason: str) -> None:
        self.killed.append((slot.slot_id, reason))


class Rig:
    """A hand-out and executors whose pipes are real (the test reads what the
    executor would, and writes nothing back: no process runs)."""

    def __init__(self) -> None:
        self.owner = Owner()
        self.executors = Executors()
        self.handout = Handout(self.owner, self.executors, Pipes())
        self.fds: list[int] = []
        self.task_reads: dict[int, int] = {}
        self.control_reads: dict[int, int] = {}

    def slot(self) -> Slot:
        task_r, task_w = os.pipe()
        ctl_r, ctl_w = os.pipe()
        steal_fd = os.open(f"/proc/self/fd/{task_r}", os.O_RDONLY | os.O_NONBLOCK)
        for fd in (task_r, task_w, ctl_r, ctl_w):
            os.set_blocking(fd, False)
        self.fds += [task_r, task_w, ctl_r, ctl_w, steal_fd]
        slot_id = len(self.executors.slots) + 1
        slot = Slot(slot_id, 1, task_w, -1, steal_fd, FrameReader(), control_fd=ctl_w)
        self.executors.slots[slot_id] = slot
        self.task_reads[slot_id], self.control_reads[slot_id] = task_r, ctl_r
        return slot

    def sent(self, slot: Slot, fd: dict[int, int] | None = None) -> list[tuple[FrameType, Any]]:
        """The frames waiting unread in ``slot``'s task (or control) pipe."""
        try:
            data = os.read((fd or self.task_reads)[slot.slot_id], 1 << 20)
        except BlockingIOError:
            return []
        return list(FrameReader().feed(data))

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The hand-out's monotonic clock, frozen (``clock.now``): how long a pipe
    stalled is then what the test says, however slow the machine."""
    frozen = SimpleNamespace(now=time.monotonic())
    monkeypatch.setattr("executor.pool.handout.time",
                        SimpleNamespace(monotonic=lambda: frozen.now, time=time.time))
    return frozen


def record(task_id: str, kind: str = "plain") -> TaskRecord:
    return TaskRecord(id=task_id, kind=kind, status="running", attempts=1, max_retries=0,
                      timeout_s=10.0, priority=0, not_before=0.0, created_at=0.0)


def start(slot: Slot, task_id: str, is_async: bool = False) -> Inflight:
    """What hearing ``STARTED`` does to the task (``ResultReader``'s part)."""
    inf = slot.waiting.popleft()
    assert inf.id == task_id
    slot.running[inf.id] = inf
    inf.started_at, inf.is_async = 1.0, is_async
    return inf


def test_handed_out_tasks_reach_the_pipe_only_when_sent(rig: Rig) -> None:
    slot = rig.slot()
    h = rig.handout
    assert h.hand_out(h.places([slot]), [record("a"), record("b")]) == []
    assert [i.id for i in slot.waiting] == ["a", "b"] and set(h.inflight) == {"a", "b"}
    assert rig.sent(slot) == []  # counted against the executor, not written yet
    h.send()
    assert [(t, body["id"]) for t, body in rig.sent(slot)] == [(FrameType.RUN, "a"),
                                                                (FrameType.RUN, "b")]
    h.send()  # nothing new: nothing written twice
    assert rig.sent(slot) == []


def test_undo_forgets_what_a_rolled_back_turn_handed_out(rig: Rig) -> None:
    slot = rig.slot()
    h = rig.handout
    h.hand_out(h.places([slot]), [record("a")])
    h.send()
    h.hand_out(h.places([slot]), [record("b")])
    h.undo()
    h.send()
    assert [i.id for i in slot.waiting] == ["a"] and set(h.inflight) == {"a"}
    assert [body["id"] for _, body in rig.sent(slot)] == ["a"]  # "b" never reached the pipe


def test_a_task_that_fits_nowhere_is_left_and_only_empty_executors_count_after(
        rig: Rig) -> None:
    busy, empty = rig.slot(), rig.slot()
    h = rig.handout
    h.hand_out([(busy, 1)], [record("async1", "aio")])  # a concurrent task holds ``busy``
    left = h.hand_out(h.places([busy]), [record("plain1")])  # one at a time: not beside it
    assert [rec.id for rec in left] == ["plain1"] and h.starved
    assert [slot for slot, _ in h.places([busy, empty])] == [empty]
    h.hand_out(h.places([busy, empty]), [record("plain1")])
    assert not h.starved and [slot for slot, _ in h.places([busy, empty])] == [busy, empty]


def test_quarantined_tasks_are_handed_out_to_run_alone(rig: Rig) -> None:
    slot = rig.slot()
    h = rig.handout
    h.quarantine.add("q")
    assert h.concurrency_of("aio", "q") == 1 and h.concurrency_of("aio", "other") == 5
    h.hand_out(h.places([slot]), [record("q", "aio")])
    h.send()
    [(_, body)] = rig.sent(slot)
    assert body["solo"] is True and body["concurrency"] == 1
    h.forget("q")
    assert h.concurrency_of("aio", "q") == 5


def test_take_back_returns_a_waiting_task_to_pending_but_not_a_started_one(
        rig: Rig) -> None:
    slot = rig.slot()
    h = rig.handout
    h.hand_out(h.places([slot]), [record("a"), record("b")])
    h.send()
    start(slot, "a")
    assert h.take_back("a") is False  # running: not the pipe's any more
    assert h.take_back("b") is True
    assert rig.owner.released == ["b"] and set(h.inflight) == {"a"}
    assert slot.hold  # it gets no more than it can start until a task of its ends
    assert h.take_back("unknown") is False


def test_cancel_running_kills_for_a_def_task_and_sends_cancel_for_an_async_one(
        rig: Rig) -> None:
    plain, aio = rig.slot(), rig.slot()
    h = rig.handout
    h.hand_out([(plain, 1)], [record("p")])
    h.hand_out([(aio, 5)], [record("x", "aio"), record("waits", "aio")])
    start(plain, "p")
    start(aio, "x", is_async=True)
    assert h.cancel_running("nothing", "api") is False
    assert h.cancel_running("p", "api") and rig.executors.killed == [(plain.slot_id, "cancelled")]
    assert h.cancel_running("x", "api") and rig.executors.killed == [(plain.slot_id, "cancelled")]
    assert [(t, body) for t, body in rig.sent(aio, rig.control_reads)] == [
        (FrameType.CANCEL, {"id": "x"})]
    assert aio.running["x"].cancel_sent_at is not None
    # Still waiting: only marked; it is stopped when it starts (``stop_cancelled``).
    assert h.cancel_running("waits", "api") and rig.sent(aio, rig.control_reads) == []
    assert h.inflight["waits"][1].cancelled_by == "api"


def test_a_second_claim_of_a_task_still_here_stops_the_earlier_run(rig: Rig) -> None:
    slot = rig.slot()
    h = rig.handout
    h.hand_out(h.places([slot]), [record("t")])
    h.send()
    earlier = start(slot, "t")
    h.hand_out(h.places([slot]), [record("t")])  # the store gave "t" to a new claim
    assert earlier.cancelled_by == LEASE_TAKEN
    assert rig.executors.killed == [(slot.slot_id, "cancelled")]
    assert h.inflight["t"][1] is not earlier  # the new claim is the one listed
    h.unlist(earlier)  # the earlier run ending does not drop the new claim
    assert "t" in h.inflight


def test_tasks_stalled_behind_a_slow_one_are_taken_back(rig: Rig, clock: SimpleNamespace
                                                       ) -> None:
    slow, fresh = rig.slot(), rig.slot()
    h = rig.handout
    h.hand_out([(slow, 2)], [record("running"), record("stalled")])
    h.hand_out([(fresh, 2)], [record("f1"), record("f2")])
    h.send()
    start(slow, "running")
    start(fresh, "f1")
    fresh.last_progress = clock.now - STEAL_AFTER_S / 2
    slow.last_progress = clock.now - STEAL_AFTER_S * 1.5  # started nothing for that long
    h.take_back_stalled([slow, fresh], [slow, fresh])
    assert rig.owner.released == ["stalled"] and [i.id for i in fresh.waiting] == ["f2"]


def test_with_an_empty_executor_tasks_are_taken_back_sooner(rig: Rig, clock: SimpleNamespace
                                                            ) -> None:
    slow, idle = rig.slot(), rig.slot()
    h = rig.handout
    h.hand_out([(slow, 2)], [record("running"), record("stalled")])
    h.send()
    start(slow, "running")
    slow.last_progress = clock.now - (REBALANCE_AFTER_S + STEAL_AFTER_S) / 2
    h.take_back_stalled([slow], [slow])  # no empty executor: not yet
    assert rig.owner.released == []
    h.take_back_stalled([slow, idle], [slow, idle])
    assert rig.owner.released == ["stalled"]


def test_send_skips_an_executor_buried_meanwhile(rig: Rig) -> None:
    slot = rig.slot()
    h = rig.handout
    h.hand_out(h.places([slot]), [record("a")])
    del rig.executors.slots[slot.slot_id]
    h.send()
    assert rig.sent(slot) == []
