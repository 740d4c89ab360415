"""Benchmark POST /tasks and POST /tasks/batch through real gunicorn with wrk.

For each worker class it starts offload (2 HTTP workers, 2 executors, SQLite),
drives it with wrk (keep-alive connections, Lua script for the POST body),
and prints accepted tasks/s, latency percentiles, and whether every accepted
task is in the store. wrk comes from Debian: ``apt-get install wrk``.

Usage: .venv/bin/python bench/http_bench.py [--seconds 10] [--connections 64[,256...]]
                                            [--worker-class asgi]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cpu import describe, per_unit, snapshot
from tests.support.procs import Env, ServerHandle, wait_for

SINGLE = '{"kind": "noop"}'
BATCH = json.dumps({"tasks": [{"kind": "noop"}] * 100})


def lua(body: str, path: str) -> str:
    return (f'wrk.method = "POST"\nwrk.path = "{path}"\n'
            f'wrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = [[{body}]]\n")


def run_wrk(url: str, script: str, seconds: float, connections: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency",
                          "-s", f.name, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    pcts = {}
    for p in ("50", "99"):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if m:
            scale = {"us": 1e-3, "ms": 1.0, "s": 1000.0}[m.group(2)]
            pcts[p] = float(m.group(1)) * scale
    return {"rps": rps, "requests": total, "errors": int(non2xx.group(1)) if non2xx else 0,
            "p50_ms": pcts.get("50", float("nan")), "p99_ms": pcts.get("99", float("nan"))}


def bench(worker_class: str, seconds: float, connections: list[int]) -> None:
    env = Env(Path(tempfile.mkdtemp(prefix="offload-httpbench-")), worker_class=worker_class,
              workers=2, executors=2, log_level="warning")
    server = ServerHandle(env)
    try:
        base = server.http("GET", "/queue/stats")[1]["counts"]
        stored_before = sum(base.values())
        accepted = 0

        def drain() -> float:
            t0 = time.time()
            wait_for(lambda: server.http("GET", "/queue/stats")[1]["queue_depth"] == 0, 600)
            return time.time() - t0

        for c in connections:
            cpu_before = snapshot(server)
            single = run_wrk(env.url + "/tasks", lua(SINGLE, "/tasks"), seconds, c)
            cpu = per_unit(cpu_before, snapshot(server), int(single["requests"]))
            accepted += int(single["requests"] - single["errors"])
            print(f"[{worker_class}] POST /tasks, {c} connections: {single['rps']:,.0f} "
                  f"accepted/s (p50 {single['p50_ms']:.2f} ms, p99 {single['p99_ms']:.2f} ms, "
                  f"non-202: {single['errors']}); executors drained the rest in "
                  f"{drain():.1f} s")
            print(f"[{worker_class}]   {describe(cpu, 'request')}", flush=True)
        for c in connections:
            cpu_before = snapshot(server)
            batch = run_wrk(env.url + "/tasks/batch", lua(BATCH, "/tasks/batch"), seconds,
                            max(2, c // 4))
            cpu = per_unit(cpu_before, snapshot(server), int(batch["requests"]) * 100)
            accepted += int(batch["requests"] - batch["errors"]) * 100
            print(f"[{worker_class}] POST /tasks/batch (100/batch), {max(2, c // 4)} "
                  f"connections: {batch['rps'] * 100:,.0f} tasks/s accepted "
                  f"({batch['rps']:,.0f} batches/s, p50 {batch['p50_ms']:.2f} ms, "
                  f"p99 {batch['p99_ms']:.2f} ms, non-202: {batch['errors']})")
            print(f"[{worker_class}]   {describe(cpu, 'task')}", flush=True)
            print(f"[{worker_class}] executors drained the batch backlog in {drain():.1f} s")

        counts = server.http("GET", "/queue/stats")[1]["counts"]
        n = int(sum(counts.values())) - stored_before
        print(f"[{worker_class}] accepted {accepted:,} tasks, {n:,} in the store "
              f"({'every accepted task stored' if n >= accepted else 'MISSING TASKS'})")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", default="64",
                        help="wrk connections for POST /tasks, comma-separated for a sweep"
                             " (a quarter of each for POST /tasks/batch); default 64")
    parser.add_argument("--worker-class", action="append",
                        help="default: uvicorn_worker.UvicornWorker and asgi")
    opts = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    for wc in opts.worker_class or ["uvicorn_worker.UvicornWorker", "asgi"]:
        bench(wc, opts.seconds, [int(c) for c in opts.connections.split(",")])


if __name__ == "__main__":
    main()
