"""``offload check [--ready]``: exit 0 when the server is alive (``--ready``:
ready to run tasks), 69 when it cannot be reached or is not ready. For probes:
it imports no task code and sends one request."""

from __future__ import annotations

import argparse

from server.cli.output import Printer
from server.client import Client


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser],
        common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("check", parents=[common], help="probe the server (exit 0 or 69)",
                       description="GET /healthz (or /readyz with --ready). Exit 0 when "
                                   "it answers 200, 69 when unreachable or not ready.")
    p.add_argument("--ready", action="store_true",
                   help="check readiness (the pool answers, an executor is up)")
    p.set_defaults(run=run)


def run(client: Client, args: argparse.Namespace, out: Printer) -> int:
    body = client.health(ready=args.ready)
    out.result(body, "ready" if args.ready else "ok")
    return 0
