"""``offload schedules``: the periodic tasks the pool runs, their next slot,
and their last slot and run (``GET /schedules``)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from server.cli.output import Printer, table
from server.client import Client


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser],
        common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("schedules", parents=[common], help="periodic tasks and their runs",
                       description="GET /schedules: each schedule, its next slot, its last "
                                   "slot and run.")
    p.set_defaults(run=run)


def _utc(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def render(rows: list[dict[str, Any]]) -> str:
    """The schedules as a person reads them (times in UTC)."""
    return table(("name", "kind", "spec", "next slot (UTC)", "last slot (UTC)", "last run"),
                 [(r["name"], r["kind"], r["spec"], _utc(r["next_slot"]), _utc(r["last_slot"]),
                   None if r["last_run"] is None else
                   f"{r['last_run']['task_id']} {r['last_run']['status'] or 'purged'}")
                  for r in rows])


def run(client: Client, args: argparse.Namespace, out: Printer) -> int:
    rows = client.schedules()
    out.result({"schedules": rows}, render(rows))
    return 0
