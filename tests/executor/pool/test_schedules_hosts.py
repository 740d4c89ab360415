"""Three schedulers ("hosts") on one store, clocks offset by -2 s, 0 and +2 s,
each in its own thread with its own store connection, their turns racing:
every slot is enqueued once, also when one host stops mid-run and while
finished runs are purged.

The pool around each ``Scheduler`` is reduced to what it uses (the store,
``enqueue`` in the turn's batch, metrics): a narrow seam, so that the same
test runs on every backend of the store contract suite (its ``store_url``); the
real pool is tested in test_schedules.py. Simulated time advances in steps
that every host takes together (a barrier), so nothing here sleeps.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest

from config import Settings
from config.schedules import Schedule
from executor.pool.schedules import Scheduler, parse_key, prepare
from executor.store import NewTask, Store, TaskRecord, open_store
from executor.store.records import Outcome
from metrics import PoolMetrics
from tests.executor.store.conftest import store_url  # noqa: F401 - the fixture, per backend

F0 = 2_000_000_000.0
STEP_S = 0.25
OFFSETS_S = (-2.0, 0.0, 2.0)
MANIFEST = {"slot_run": {"max_retries": 0, "timeout_s": 10.0, "retry_backoff_s": None,
                         "retry_backoff_max_s": None,
                         "params": [["trace", 1, False], ["scheduled_for", 1, False]]}}


class Host:
    """One pool's scheduler and store connection, at ``offset_s`` from true time."""

    def __init__(self, url: str, offset_s: float, now: Callable[[], float]) -> None:
        self.url, self.offset_s, self.true_now = url, offset_s, now
        self.store: Store | None = None
        self.metrics = PoolMetrics()
        self.settings = Settings(schedules=(Schedule(
            name="tick", kind="slot_run", every_s=1.0, catch_up="all",
            kwargs={"trace": "tick"}, source="offload.toml"),))
        self.scheduler = Scheduler(self, self.clock)  # type: ignore[arg-type]
        self.enqueued: list[float] = []  # slots this host enqueued, once committed
        self._turn: list[float] = []

    def clock(self) -> float:
        return self.true_now() + self.offset_s

    def open(self) -> None:  # in the host's own thread: a store stays in its thread
        self.store = open_store(self.url)
        self.scheduler.use(prepare(MANIFEST, self.settings))

    def enqueue(self, tasks: list[NewTask]) -> list[TaskRecord]:
        assert self.store is not None
        records = self.store.enqueue(tasks, self.true_now(), sync=False)
        self._turn += [parse_key(r.idempotency_key)[1] for r in records]  # type: ignore[index]
        return records

    def schedule_turn(self) -> None:
        pass

    def turn(self) -> None:
        """One loop turn of the pool: the due slots in one transaction."""
        assert self.store is not None
        if not self.scheduler.due():
            return
        self._turn = []
        try:
            with self.store.batch():
                self.scheduler.enqueue_due()
        except Exception:
            self.scheduler.rolled_back()
            raise
        self.scheduler.committed()
        self.enqueued += self._turn

    def finish_and_purge(self) -> None:
        """Run everything due and purge what finished (as executors and the purge timer do)."""
        assert self.store is not None
        now = self.true_now()
        done = self.store.claim(1000, now, "host", 30.0)
        self.store.finish([Outcome(r.id, "succeeded", now) for r in done])
        self.store.purge(now + 1)


@pytest.mark.parametrize("offsets", [OFFSETS_S, (0.0, 0.0, 0.0)], ids=["offset", "same"])
def test_three_hosts_enqueue_each_of_100_slots_once(
        store_url: str, offsets: tuple[float, ...]) -> None:  # noqa: F811
    # "offset": clocks -2 s, 0, +2 s apart; "same": every host sees each slot
    # in the same step, so their turns race for it.
    url = store_url
    open_store(url).close()  # create the schema once, before the hosts race
    now = [F0 + 0.5]
    hosts = [Host(url, offset, lambda: now[0]) for offset in offsets]
    steps = int(100 / STEP_S)
    stop_at = steps // 2  # the third host (+2 s: it takes the slots first) stops here
    barrier = threading.Barrier(len(hosts) + 1)
    errors: list[BaseException] = []

    def run(i: int, host: Host) -> None:
        try:
            host.open()
            for step in range(steps):
                barrier.wait()
                if not (i == 2 and step >= stop_at):
                    host.turn()
                    if i == 0 and step % 20 == 19:
                        host.finish_and_purge()
                barrier.wait()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            if host.store is not None:
                host.store.close()

    threads = [threading.Thread(target=run, args=(i, h)) for i, h in enumerate(hosts)]
    for t in threads:
        t.start()
    try:
        for _ in range(steps):
            barrier.wait(30)
            barrier.wait(30)  # every host took its turn at this time
            now[0] += STEP_S
    finally:
        for t in threads:
            t.join(30)
    assert not errors, errors
    slots = Counter(s for h in hosts for s in h.enqueued)
    # From the first slot after every host started watching (the +2 s host
    # started at F0 + 2.5) to the last one due: each enqueued exactly once.
    assert {s: n for s, n in slots.items() if s >= F0 + 3} == {
        F0 + k: 1 for k in range(3, 101)}
    assert max(slots.values()) == 1
    if offsets == OFFSETS_S:
        # No leader: the host whose clock is ahead enqueued the slots until it
        # stopped, then the next one took over, each slot after the last taken.
        ahead, middle, behind = (sorted(h.enqueued) for h in (hosts[2], hosts[1], hosts[0]))
        assert ahead and middle and not [s for s in behind if s >= F0 + 3]
        assert max(ahead) < min(s for s in middle if s >= F0 + 3)
    store = open_store(url)
    try:  # the runs were purged as they went: only the slot rows kept them closed
        assert len(store.list(kind="slot_run", limit=500)[0]) < len(slots) / 2
        assert store.schedule_slots()["tick"].slot == F0 + 100
    finally:
        store.close()
