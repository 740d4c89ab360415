"""``offload status [--watch]``: counts by status, queue depth, how long the
oldest due task has waited, and the executors."""

from __future__ import annotations

import argparse
import time
from typing import Any

from server.cli.output import Printer, fields, table
from server.client import Client


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser],
        common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("status", parents=[common], help="queue counts and executors",
                       description="GET /queue/stats, once or (--watch) every --interval s.")
    p.add_argument("--watch", action="store_true", help="refresh until interrupted")
    p.add_argument("--interval", type=float, default=2.0, metavar="S",
                   help="seconds between refreshes with --watch (default 2)")
    p.add_argument("--count", type=int, default=0, metavar="N",
                   help="with --watch, stop after N refreshes (default: never)")
    p.set_defaults(run=run)


def render(stats: dict[str, Any]) -> str:
    """The stats as a person reads them."""
    counts = stats["counts"]
    head = fields([("queue depth", stats["queue_depth"]),
                   ("oldest due wait (s)", stats.get("oldest_due_s", 0.0)),
                   *((status, n) for status, n in counts.items())])
    rows = [(e["pid"], e["state"], len(e.get("running", ())), e.get("free", ""), e["task_id"],
             e["tasks_run"], e["rss_mb"]) for e in stats["executors"]]
    return head + "\n\n" + table(("pid", "state", "running", "free", "task", "tasks run",
                                   "rss MiB"), rows)


def run(client: Client, args: argparse.Namespace, out: Printer) -> int:
    shown = 0
    while True:
        stats = client.stats()
        text = render(stats)
        if args.watch and not out.json_mode:
            text = f"\x1b[H\x1b[2J{time.strftime('%H:%M:%S')}  {client.base_url}\n\n{text}"
        out.result(stats, text)
        shown += 1
        if not args.watch or (args.count and shown >= args.count):
            return 0
        time.sleep(args.interval)
