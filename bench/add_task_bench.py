"""Benchmark a route that adds one background call: offload vs Starlette (in-process).

One offload server under real gunicorn (2 HTTP workers, 2 executors, SQLite)
serves ``bench/add_task_app.py``; wrk drives each route in turn with the same
load (keep-alive connections), in the same run:

- ``inprocess``: Starlette's ``BackgroundTasks``, run in the HTTP worker after
  the response (a plain ``def`` goes to Starlette's thread pool);
- ``offload``: offload's ``BackgroundTasks``, submitted to the pool after the
  response (one socket round trip, one group-committed store write), run by
  an executor.

Each is measured with a plain ``def`` no-op and an ``async def`` no-op. For
offload it also waits until every submitted call has run and prints how long
the executors needed after the load stopped (their backlog); after an
in-process route it waits until the HTTP workers are idle (a ``def`` call
queues in Starlette's thread pool and would otherwise run during the next
measurement) and prints how long that took. wrk comes from
Debian: ``apt-get install wrk``.

The summary gives, per connection count, the median of the rounds and the
ratios the targets are stated in: offload's requests/s over the in-process
route's, for the ``def`` task and for the ``async def`` task.

Usage: .venv/bin/python bench/add_task_bench.py [--seconds 10] [--connections 50[,256...]]
                                                [--rounds 2]
"""

from __future__ import annotations

import argparse
import itertools
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cpu import describe, per_unit, snapshot, wait_quiet
from tests.support.procs import Env, ServerHandle, wait_for

VARIANTS = [("sync", "inprocess"), ("sync", "offload"), ("async", "inprocess"),
            ("async", "offload")]


def run_wrk(url: str, seconds: float, connections: int) -> dict[str, float]:
    """One wrk run; requests/s, p50/p99 in ms, requests and non-2xx answers."""
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency",
                          url], capture_output=True, text=True, check=True).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if found is None or total is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    result = {"rps": float(found.group(1)), "requests": int(total.group(1)),
              "non2xx": int(non2xx.group(1)) if non2xx else 0,
              "socket_errors": 1 if errors else 0}
    for p in ("50", "99"):
        m = re.search(rf"\s{p}(?:\.000)?%\s+([\d.]+)(us|ms|s)\b", out)
        scale = {"us": 1e-3, "ms": 1.0, "s": 1000.0}[m.group(2)] if m else float("nan")
        result[f"p{p}_ms"] = float(m.group(1)) * scale if m else float("nan")
    return result


def finished_count(server: ServerHandle) -> int:
    counts = server.http("GET", "/queue/stats")[1]["counts"]
    return int(counts["succeeded"] + counts["failed"] + counts["cancelled"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", default="50",
                        help="wrk connections; a comma-separated list sweeps them")
    parser.add_argument("--rounds", type=int, default=2)
    opts = parser.parse_args()
    sweep = [int(c) for c in str(opts.connections).split(",")]
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")

    tmp = Path(tempfile.mkdtemp(prefix="offload-addtask-"))
    env = Env(tmp, app="bench.add_task_app:app", task_modules=["bench.add_task_app"],
              workers=2, executors=2, log_level="warning")
    server = ServerHandle(env)
    results: dict[tuple[int, str, str], list[dict[str, float]]] = {
        (c, fn, variant): [] for c in sweep for fn, variant in VARIANTS}
    try:
        for fn, variant in VARIANTS:  # warm up every route and the pool
            run_wrk(f"{env.url}/{variant}/{fn}", 2, sweep[0])
        wait_for(lambda: server.http("GET", "/queue/stats")[1]["queue_depth"] == 0, 120,
                 what="the warm-up backlog to drain")
        for _, c, (fn, variant) in itertools.product(range(opts.rounds), sweep, VARIANTS):
            before = finished_count(server)
            cpu_before = snapshot(server)
            r = run_wrk(f"{env.url}/{variant}/{fn}", opts.seconds, c)
            cpu = per_unit(cpu_before, snapshot(server), int(r["requests"]))
            if variant == "offload":
                stopped = time.monotonic()
                wait_for(lambda b=before, n=r["requests"]: finished_count(server) - b >= n,
                         300, interval_s=0.2, what="every submitted call to run")
                r["drain_s"] = time.monotonic() - stopped
                r["ran"] = finished_count(server) - before
            else:
                # Starlette's calls left in its thread pool would run during
                # the next measurement: wait until the workers are idle.
                r["drain_s"] = wait_quiet(server)
            results[(c, fn, variant)].append(r)
            print(f"  {c:4} conn  {variant:9} {fn:5}  {r['rps']:8,.0f} req/s  "
                  f"p50 {r['p50_ms']:6.2f} ms"
                  f"  p99 {r['p99_ms']:6.2f} ms  non-2xx {r['non2xx']:.0f}"
                  + (f"  executors done {r['drain_s']:.1f} s after the load"
                     if variant == "offload" else
                     f"  workers idle {r['drain_s']:.1f} s after the load")
                  + f"\n            {describe(cpu, 'request')}", flush=True)
        counts = server.http("GET", "/queue/stats")[1]["counts"]
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nmedian of {opts.rounds} round(s), wrk -t2 -d{int(opts.seconds)}s, "
          "2 HTTP workers, 2 executors:")
    print(f"{'conn':>4} {'task':6} {'variant':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    median: dict[tuple[int, str, str], float] = {}
    for c in sweep:
        for fn, variant in VARIANTS:
            rs = results[(c, fn, variant)]
            median[(c, fn, variant)] = statistics.median(r["rps"] for r in rs)
            print(f"{c:4} {fn:6} {variant:10} {median[(c, fn, variant)]:9,.0f} "
                  f"{statistics.median(r['p50_ms'] for r in rs):8.2f} "
                  f"{statistics.median(r['p99_ms'] for r in rs):8.2f}")
    for c in sweep:
        print(f"{c:4} connections: offload / in-process req/s: def task "
              f"{median[(c, 'sync', 'offload')] / median[(c, 'sync', 'inprocess')]:.2f}x, "
              f"async def task "
              f"{median[(c, 'async', 'offload')] / median[(c, 'async', 'inprocess')]:.0%}")
    print(f"store after the run: {counts}")


if __name__ == "__main__":
    main()
