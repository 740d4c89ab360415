"""What ``/queue/stats`` and the metrics show of the executors (pure, on
``Slot`` objects with no pipes behind them)."""

from __future__ import annotations

from executor.pool import census
from executor.pool.slots import ExecutorState, Inflight, Slot
from executor.wire.protocol import FrameReader


def slot(slot_id: int, state: ExecutorState, running: tuple[tuple[str, int], ...] = (),
         waiting: int = 0, pid: int | None = None) -> Slot:
    """An executor in ``state`` running ``(task id, concurrency)`` tasks and
    holding ``waiting`` more in its pipe."""
    s = Slot(slot_id, 1, -1, -1, -1, FrameReader(), pid=pid, tasks_run=slot_id)
    s.state = state
    for task_id, c in running:
        s.running[task_id] = Inflight(task_id, "k", 1, 0, 1.0, 0.0, 0.0, concurrency=c)
    for i in range(waiting):
        s.waiting.append(Inflight(f"w{slot_id}.{i}", "k", 1, 0, 1.0, 0.0, 0.0, concurrency=1))
    return s


EMPTY = slot(1, ExecutorState.IDLE, pid=101)
ASYNC = slot(2, ExecutorState.BUSY, (("a1", 5), ("a2", 5)), pid=102)
SOLO = slot(3, ExecutorState.BUSY, (("s1", 1),), waiting=2, pid=103)
LEAVING = slot(4, ExecutorState.STOPPING, (("l1", 5),), pid=104)
DEAD = slot(5, ExecutorState.DEAD)
FLEET = [EMPTY, ASYNC, SOLO, LEAVING, DEAD]


def test_rows_show_each_executor_and_what_it_could_still_start() -> None:
    rows = {r["pid"]: r for r in census.rows(FLEET, async_concurrency=100)}
    assert rows[101] == {"pid": 101, "state": "idle", "task_id": None, "running": [],
                         "free": 100, "tasks_run": 1, "rss_mb": None}
    assert (rows[102]["task_id"], rows[102]["running"], rows[102]["free"]) == ("a1",
                                                                             ["a1", "a2"], 3)
    assert rows[103]["free"] == 0  # a one-at-a-time task, and more waiting
    assert rows[104]["free"] == 0  # stopping: takes nothing new whatever its room
    assert len(rows) == 5


def test_states_count_every_executor_but_the_dead() -> None:
    assert census.states(FLEET) == {"idle": 1, "busy": 2, "stopping": 1}
    assert census.states([]) == {}


def test_task_places_count_running_everywhere_and_free_only_where_tasks_are_taken() -> None:
    assert census.task_places(FLEET, async_concurrency=100) == {"busy": 4, "free": 103}


def test_up_counts_forked_executors_that_idle_or_work() -> None:
    unforked = slot(6, ExecutorState.IDLE)  # no pid known yet: not up
    starting = slot(7, ExecutorState.STARTING, pid=107)
    assert census.up([*FLEET, unforked, starting]) == 3  # EMPTY, ASYNC, SOLO
    assert census.up([LEAVING, DEAD]) == 0
