"""Tasks that each wait 50 ms: how many per second the pool runs, end to end.

Two phases, each on a fresh pool with the default settings (``executors = 2``,
``executors_max``, ``async_concurrency``), through the pool's Unix socket:

  1. ``async def`` tasks (``asyncio.sleep``): they share the executors' loops;
  2. ``def`` tasks (``time.sleep``): one per executor, the executors grow
     from ``executors`` towards ``executors_max`` while tasks wait.

Each phase submits its tasks in batches (8 requests in flight) and times
from the first submit to the last task succeeded. Also prints the executors
seen at the end of the ``def`` phase and their private memory (USS from
/proc/<pid>/smaps_rollup) when idle.

Usage: .venv/bin/python bench/wait_bench.py [--tasks 6000] [--wait-s 0.05]
       [--executors-max N] [--async-concurrency N] [--only async|def]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pool_bench import throughput
from config import Settings
from executor.wire.codec import encode_call
from tests.support.procs import Env, PoolHandle, wait_for


def private_mb(pid: int) -> float:
    """Private (unshared) memory of ``pid`` in MiB: Private_Clean + Private_Dirty."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total / 1024


def phase(kind: str, opts: argparse.Namespace) -> None:
    defaults = Settings()
    settings: dict[str, Any] = {
        "executors": defaults.executors,
        "executors_max": opts.executors_max or defaults.executors_max,
        "async_concurrency": opts.async_concurrency or defaults.async_concurrency,
        "log_level": "warning",
    }
    env = Env(Path(tempfile.mkdtemp(prefix="offload-wait-")), **settings)
    pool = PoolHandle(env)
    spec = {"kind": "async_wait" if kind == "async" else "sleep",
            "payload": encode_call([opts.wait_s], {})}
    try:
        rate = asyncio.run(throughput(env.socket_path, opts.tasks, opts.batch, spec))
        rows = pool.call("stats")["executors"]
        label = "async def" if kind == "async" else "def"
        print(f"{label:>9} tasks waiting {opts.wait_s * 1000:g} ms: {opts.tasks} tasks, "
              f"executors {settings['executors']}..{settings['executors_max']}, "
              f"async_concurrency {settings['async_concurrency']}: {rate:,.0f} tasks/s "
              f"end to end ({len(rows)} executors at the end)", flush=True)
        if kind == "def":
            wait_for(lambda: all(r["state"] == "idle" for r in pool.call("stats")["executors"]),
                     30, what="the executors to be idle")
            mem = [private_mb(r["pid"]) for r in pool.call("stats")["executors"]]
            print(f"      idle executors' private memory (USS) after the run: median "
                  f"{statistics.median(mem):.1f} MiB, max {max(mem):.1f} MiB, "
                  f"{len(mem)} executors", flush=True)
    finally:
        pool.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--wait-s", type=float, default=0.05)
    parser.add_argument("--executors-max", type=int, default=0, help="0 = the default")
    parser.add_argument("--async-concurrency", type=int, default=0, help="0 = the default")
    parser.add_argument("--only", choices=("async", "def"))
    opts = parser.parse_args()
    t0 = time.perf_counter()
    for kind in ("async", "def"):
        if opts.only in (None, kind):
            phase(kind, opts)
    print(f"(bench took {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
