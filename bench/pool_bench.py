"""Benchmark the pool through its Unix socket (no HTTP).

Prints:
  1. end-to-end throughput: N no-op tasks submitted in batches -> all succeeded;
  2. submit -> task start latency at a paced rate (p50, p99);
  3. time from a segfault to the next task starting on the replacement executor.

Usage: .venv/bin/python bench/pool_bench.py [--tasks 20000] [--executors 2]
       [--executors-max N]
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

from config import Settings
from executor.client.client import PoolClient
from executor.wire.codec import encode_call
from tests.support.procs import Env, PoolHandle

NOOP = {"kind": "noop", "payload": encode_call([], {})}


async def throughput(path: str, n: int, batch: int, spec: dict[str, Any] | None = None
                     ) -> float:
    """Tasks per second from the first submit to the last of ``n`` tasks
    (``spec``, a no-op by default) succeeded."""
    spec = NOOP if spec is None else spec
    client = PoolClient(path)
    before = (await client.call("stats"))["counts"]["succeeded"]
    t0 = time.perf_counter()
    # Several submissions in flight at once, as several HTTP workers would send.
    sem = asyncio.Semaphore(8)

    async def send(k: int) -> str:
        async with sem:
            reply = await client.call("submit", {"tasks": [spec] * k})
            return str(reply["tasks"][-1]["id"])

    ids = await asyncio.gather(*(send(min(batch, n - i)) for i in range(0, n, batch)))
    await client.call("get", {"id": ids[-1], "wait_s": 60})
    # counts() is a scan of the store: poll it gently, so the bench does not
    # measure its own polling.
    while (await client.call("stats"))["counts"]["succeeded"] - before < n:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - t0
    await client.close()
    return n / elapsed


async def paced_latency(path: str, rate: float, seconds: float) -> list[float]:
    client = PoolClient(path)
    sent: list[tuple[str, float]] = []
    start = time.time()
    for i in range(int(rate * seconds)):
        target = start + i / rate
        delay = target - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        t = time.time()
        rec = (await client.call("submit", {"tasks": [NOOP]}))["tasks"][0]
        sent.append((rec["id"], t))
    lat = []
    for task_id, t in sent:
        rec = await client.call("get", {"id": task_id, "wait_s": 10})
        lat.append(rec["started_at"] - t)
    await client.close()
    return lat


async def crash_to_next(path: str, rounds: int) -> list[float]:
    client = PoolClient(path)
    out = []
    for _ in range(rounds):
        specs = [{"kind": "segfault", "payload": encode_call([], {})}, NOOP]
        crash_id, next_id = [t["id"] for t in
                             (await client.call("submit", {"tasks": specs}))["tasks"]]
        crash = await client.call("get", {"id": crash_id, "wait_s": 10})
        nxt = await client.call("get", {"id": next_id, "wait_s": 10})
        out.append(nxt["started_at"] - crash["started_at"])
        await asyncio.sleep(0.05)
    await client.close()
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--executors", type=int, default=2)
    parser.add_argument("--executors-max", type=int, default=0,
                        help="0 = the setting's default (the pool may grow to it)")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    opts = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="offload-bench-"))
    executors_max = opts.executors_max or Settings().executors_max
    env = Env(tmp, executors=opts.executors, executors_max=executors_max, log_level="warning")
    pool = PoolHandle(env)
    try:
        rate = asyncio.run(throughput(env.socket_path, opts.tasks, opts.batch))
        print(f"throughput: {opts.tasks} no-op tasks, executors {opts.executors}.."
              f"{executors_max} ({len(pool.call('stats')['executors'])} at the end), "
              f"batches of {opts.batch}: {rate:,.0f} tasks/s end to end")
        lat = asyncio.run(paced_latency(env.socket_path, opts.rate, opts.seconds))
        print(f"latency submit->start at {opts.rate:g} tasks/s for {opts.seconds:g} s: "
              f"p50 {pct(lat, 50) * 1000:.2f} ms, p99 {pct(lat, 99) * 1000:.2f} ms, "
              f"max {max(lat) * 1000:.2f} ms")
    finally:
        pool.stop()
    env1 = Env(Path(tempfile.mkdtemp(prefix="offload-bench-")), executors=1,
               log_level="warning")
    pool = PoolHandle(env1)
    try:
        gaps = asyncio.run(crash_to_next(env1.socket_path, 20))
        print(f"segfault -> next task started on the replacement executor (1 executor, "
              f"20 rounds): median {statistics.median(gaps) * 1000:.1f} ms, "
              f"max {max(gaps) * 1000:.1f} ms")
    finally:
        pool.stop()


if __name__ == "__main__":
    main()
