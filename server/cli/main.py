"""The ``offload`` command: parser, global options, and exit codes.

Exit codes (also in the README):

- 0 ``EXIT_OK``: done (the task succeeded, the server is healthy);
- 1 ``EXIT_FAILED``: the task failed or was cancelled, or the server refused
  the operation (404, 409, 422, 401...);
- 2 ``EXIT_USAGE``: the command line is wrong;
- 69 ``EXIT_UNAVAILABLE``: the server cannot be reached, or answers that it
  or its pool is unavailable (503), or is not ready (``check --ready``);
- 124 ``EXIT_TIMEOUT``: ``--wait`` ran out before the task finished.
"""

from __future__ import annotations

import argparse
import os
import sys

from server.cli import check, run, schedules, status, tasks
from server.cli.output import Printer, say
from server.client import Client, ClientError, Unavailable, WaitTimeout
from server.routes import version

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69
EXIT_TIMEOUT = 124
DEFAULT_URL = "http://127.0.0.1:8000"


def _global_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    """The options every command takes, before or after its name."""
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    p.add_argument("--url", default=default(os.environ.get("OFFLOAD_URL", DEFAULT_URL)),
                   help=f"the server's base URL (env OFFLOAD_URL; default {DEFAULT_URL})")
    p.add_argument("--token", default=default(os.environ.get("OFFLOAD_AUTH_TOKEN")),
                   help="the bearer token (env OFFLOAD_AUTH_TOKEN)")
    p.add_argument("--output", "-o", choices=("table", "json"), default=default("table"),
                   help="table for people (default) or json (stdout holds JSON only)")
    p.add_argument("--http-timeout", dest="http_timeout_s", type=float, default=default(10.0),
                   metavar="S", help="seconds to wait for each answer (default 10)")


def parser() -> argparse.ArgumentParser:
    """The whole command line."""
    top = argparse.ArgumentParser(
        prog="offload", description="Operate an offload server over its HTTP API.",
        epilog="exit codes: 0 ok, 1 task failed or operation refused, 2 usage, "
               "69 server unavailable, 124 --wait ran out")
    top.add_argument("--version", action="version", version=f"offload {version()}")
    _global_options(top, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    status.add(sub, common)
    schedules.add(sub, common)
    tasks.add(sub, common)
    check.add(sub, common)
    run.add(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run one ``offload`` command; its exit code."""
    top = parser()
    # serve and pool pass what they do not know on (gunicorn's or the pool's
    # options); every other command refuses it (exit 2).
    args, unknown = top.parse_known_args(argv)
    if getattr(args, "start", None) is not None:
        args.extra = [*unknown, *args.extra]
        return run.start(args)
    if unknown:
        top.error(f"unrecognized arguments: {' '.join(unknown)}")
    out = Printer(args.output)
    try:
        with Client(args.url, args.token, timeout_s=args.http_timeout_s) as client:
            code: int = args.run(client, args, out)
            return code
    except tasks.UsageError as exc:
        say(f"offload: {exc}")
        return EXIT_USAGE
    except WaitTimeout as exc:
        if exc.record is not None:
            out.result(exc.record)
        say(f"offload: {exc}")
        return EXIT_TIMEOUT
    except Unavailable as exc:
        say(f"offload: {args.url} is unavailable: {exc}")
        return EXIT_UNAVAILABLE
    except ClientError as exc:
        say(f"offload: refused: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """The console script."""
    sys.exit(main())
