"""Benchmark several pools sharing a PostgreSQL store, beside SQLite, in one run.

Starts a private PostgreSQL server on this machine (as the tests do: fsync
on, Unix socket) and pools through their Unix sockets (no HTTP). Prints:
  1. end-to-end throughput: N no-op tasks submitted in batches -> all
     succeeded, for SQLite (1 pool) and PostgreSQL with 1 and 2 pools (the
     submissions split between the pools); every task is durable (202 only
     after COMMIT);
  2. submit -> task start latency at a paced rate (p50, p99), same setups;
  3. PostgreSQL, 2 pools: time from a pool's SIGKILL (with its executors)
     to each of its running tasks starting on the other pool.

Usage: .venv/bin/python bench/hosts_bench.py [--tasks 20000] [--lease-s 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from bench.pool_bench import NOOP, paced_latency, pct
from executor.client.client import PoolClient
from executor.wire.codec import encode_call
from tests.support.postgres import PostgresServer, running_server
from tests.support.procs import Env, PoolHandle, kill_session


async def throughput(paths: list[str], n: int, batch: int) -> float:
    """Submit ``n`` no-ops split over the pools at ``paths``; tasks/s until all succeeded."""
    clients = [PoolClient(p) for p in paths]
    before = (await clients[0].call("stats"))["counts"]["succeeded"]
    t0 = time.perf_counter()
    sem = asyncio.Semaphore(8 * len(clients))  # 8 submissions in flight per pool

    async def send(i: int, k: int) -> None:
        async with sem:
            await clients[i % len(clients)].call("submit", {"tasks": [NOOP] * k})

    await asyncio.gather(*(send(j, min(batch, n - i))
                           for j, i in enumerate(range(0, n, batch))))
    while (await clients[0].call("stats"))["counts"]["succeeded"] - before < n:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - t0
    for c in clients:
        await c.close()
    return n / elapsed


def pools(n: int, store_url: str, executors: int, **settings: object) -> list[PoolHandle]:
    out = []
    for _ in range(n):
        env = Env(Path(tempfile.mkdtemp(prefix="offload-bench-")), executors=executors,
                  store_url=store_url, log_level="warning", **settings)
        out.append(PoolHandle(env))
    return out


def run_setup(name: str, store_url: str, n_pools: int, opts: argparse.Namespace) -> None:
    group = pools(n_pools, store_url, opts.executors)
    try:
        paths = [p.env.socket_path for p in group]
        rate = asyncio.run(throughput(paths, opts.tasks, opts.batch))
        print(f"{name}: throughput {opts.tasks} no-op tasks, {n_pools} pool(s) x "
              f"{opts.executors} executors, batches of {opts.batch}: {rate:,.0f} tasks/s "
              f"end to end", flush=True)
        lat = asyncio.run(paced_latency(paths[0], opts.rate, opts.seconds))
        print(f"{name}: latency submit->start at {opts.rate:g} tasks/s for {opts.seconds:g} s "
              f"(submitted to one pool): p50 {pct(lat, 50) * 1000:.2f} ms, "
              f"p99 {pct(lat, 99) * 1000:.2f} ms, max {max(lat) * 1000:.2f} ms", flush=True)
    finally:
        for p in group:
            p.stop()


def takeover(server: PostgresServer, opts: argparse.Namespace) -> list[float]:
    """Seconds from a pool's SIGKILL to each of its running tasks starting on the other."""
    gaps: list[float] = []
    for _ in range(opts.rounds):
        url = server.url(server.create_database())
        a, b = pools(2, url, 2, lease_s=opts.lease_s)
        try:
            sleepy = {"kind": "sleep", "payload": encode_call([600], {})}
            ids = [str(r["id"]) for r in a.call("submit", {"tasks": [sleepy] * 2})["tasks"]]

            def rows(url: str = url, ids: list[str] = ids) -> list[tuple[str | None,
                                                                          float | None]]:
                with psycopg.connect(url) as conn:
                    return conn.execute(  # type: ignore[return-value]
                        "SELECT lease_owner, started_at FROM offload_tasks WHERE id = ANY(%s)",
                        (ids,)).fetchall()

            deadline = time.monotonic() + 30
            while not all(s is not None for _, s in rows()):
                assert time.monotonic() < deadline, "the tasks did not start on pool a"
                time.sleep(0.01)
            owner_a = rows()[0][0]
            killed = time.time()
            kill_session(a.pid)
            deadline = time.monotonic() + opts.lease_s + 60
            while True:
                now = rows()
                if all(o not in (None, owner_a) and s is not None and s > killed
                       for o, s in now):
                    gaps += [s - killed for _, s in now if s is not None]
                    break
                assert time.monotonic() < deadline, "pool b did not take the tasks over"
                time.sleep(0.02)
        finally:
            a.stop()
            b.stop()
    return gaps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--executors", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--lease-s", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    sqlite_url = f"sqlite:///{tempfile.mkdtemp(prefix='offload-bench-')}/offload.db"
    run_setup("sqlite", sqlite_url, 1, opts)
    with running_server() as server:
        for n_pools in (1, 2):
            run_setup(f"postgresql {n_pools} pool(s)", server.url(server.create_database()),
                      n_pools, opts)
        gaps = takeover(server, opts)
        print(f"postgresql 2 pools, lease_s {opts.lease_s:g}: a pool SIGKILLed -> its running "
              f"tasks started on the other ({len(gaps)} tasks, {opts.rounds} rounds): median "
              f"{statistics.median(gaps):.2f} s, max {max(gaps):.2f} s "
              f"(lease_s + sweep bound: {opts.lease_s + 4.5:g} s)", flush=True)


if __name__ == "__main__":
    main()
