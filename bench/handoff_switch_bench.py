"""What the test-mode switch costs a hand-off on the production path.

``BackgroundTasks.__call__`` reads ``executor.client.divert.handler`` once per
hand-off (``None`` in production). This prints:

- the time of that check alone (the same expression, in a function, as in
  ``__call__``), per check;
- the time of a whole production hand-off up to the outbox (``BackgroundTasks()``,
  one ``add_task``, ``await tasks()``, which queues the call in this process's
  outbox; no pool runs, and the outbox's sender never gets a turn, so nothing
  leaves the process), per request;

and the check's share of the hand-off. Best of ``--rounds`` rounds each.

Usage: .venv/bin/python bench/handoff_switch_bench.py [--n 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.settings import Settings
from examples.tasks import noop
from executor import BackgroundTasks
from executor.client import divert
from executor.client.shared import shared_outbox


def check_ns(n: int) -> float:
    def loop(n: int) -> None:
        for _ in range(n):
            if divert.handler is not None:
                raise AssertionError("a test mode is on")

    def empty(n: int) -> None:
        for _ in range(n):
            pass

    t0 = time.perf_counter_ns()
    loop(n)
    t1 = time.perf_counter_ns()
    empty(n)
    t2 = time.perf_counter_ns()
    return max(0.0, ((t1 - t0) - (t2 - t1)) / n)


async def hand_off_ns(n: int, settings: Settings) -> float:
    outbox = shared_outbox(settings)
    total = 0
    done = 0
    while done < n:
        batch = min(5_000, n - done)  # under MAX_QUEUED_CALLS: put never waits
        t0 = time.perf_counter_ns()
        for _ in range(batch):
            tasks = BackgroundTasks(settings=settings)
            tasks.add_task(noop)
            await tasks()
        total += time.perf_counter_ns() - t0
        done += batch
        outbox._queue.clear()  # the bench's own reset: nothing is ever sent
        outbox._queued_calls = 0
    if outbox._sender is not None:
        outbox._sender.cancel()
    return total / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    assert divert.handler is None
    settings = Settings(run_dir=tempfile.mkdtemp(prefix="of-bench-", dir="/tmp"))
    checks = [check_ns(args.n * 10) for _ in range(args.rounds)]
    hand_offs = [asyncio.run(hand_off_ns(args.n, settings)) for _ in range(args.rounds)]
    check, hand_off = min(checks), min(hand_offs)
    print(f"divert check:         {check:7.1f} ns per hand-off (best of {args.rounds})")
    print(f"production hand-off:  {hand_off:7.1f} ns per request up to the outbox "
          f"(BackgroundTasks(), add_task(noop), await tasks(); best of {args.rounds})")
    print(f"check's share:        {100 * check / hand_off:7.2f} %")


if __name__ == "__main__":
    main()
