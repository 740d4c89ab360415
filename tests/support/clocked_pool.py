"""A real pool whose schedules go by a clock the test sets (test harness only).

``python -m tests.support.clocked_pool --config PATH --clock-file PATH`` runs
the same ``Pool`` as ``python -m executor``, built with a ``FileClock``
instead of ``time.time`` (the ``clock`` seam of ``Pool``). The clock file
holds JSON ``{"at": s, "real": s, "speed": x}``: the clock reads
``at + speed * (time.time() - real)``, so a test can freeze time (speed 0),
jump it, or run it faster than real time, without sleeping through slots.
``set_clock`` writes the file atomically; the clock re-reads it when it changes.

``--fail-slot-task-once`` makes the store's ``slot_task`` fail once, as a
full disk would fail a write, after the turn took a slot and enqueued its
run: the whole turn must roll back and the slot run once, later.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import uvloop

from config import start_process
from executor.pool.pool import Pool
from executor.store import sqlite
from executor.store.records import StoreError


class FileClock:
    """Seconds since the epoch as the clock file says (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._at = self._real = self._speed = 0.0

    def __call__(self) -> float:
        st = os.stat(self.path)
        if (st.st_mtime_ns, st.st_ino) != self._stamp:
            data = json.loads(Path(self.path).read_text())
            self._at, self._real, self._speed = data["at"], data["real"], data["speed"]
            self._stamp = (st.st_mtime_ns, st.st_ino)
        return float(self._at + self._speed * (time.time() - self._real))


def set_clock(path: Path, at: float, speed: float = 0.0) -> None:
    """Make the clock at ``path`` read ``at`` now, then run at ``speed`` (0: frozen)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"at": at, "real": time.time(), "speed": speed}))
    os.replace(tmp, path)  # a new inode: the clock sees the change even within one mtime tick


def _fail_slot_task_once() -> None:
    real = sqlite.SQLiteStore.slot_task
    failed: list[bool] = []

    def slot_task(self: sqlite.SQLiteStore, schedule: str, slot: float, task_id: str) -> None:
        if not failed:
            failed.append(True)
            print(f"FAULT: slot_task fails for {schedule} {slot}", flush=True)
            raise StoreError("injected: database or disk is full; nothing was changed")
        real(self, schedule, slot, task_id)

    sqlite.SQLiteStore.slot_task = slot_task  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.clocked_pool")
    parser.add_argument("--config", required=True)
    parser.add_argument("--clock-file", required=True)
    parser.add_argument("--fail-slot-task-once", action="store_true")
    opts = parser.parse_args(argv)
    if opts.fail_slot_task_once:
        _fail_slot_task_once()
    settings = start_process(opts.config)
    pool = Pool(settings, opts.config, None, clock=FileClock(opts.clock_file))
    uvloop.run(pool.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
