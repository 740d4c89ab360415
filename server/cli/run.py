"""``offload serve`` and ``offload pool``: start offload in this process
(``exec``), so a supervisor's signals reach gunicorn or the pool directly.

``serve`` runs gunicorn with offload's config (``config/gunicorn.conf.py``,
shipped in the package); ``pool`` runs the pool alone (``python -m
executor``). Arguments after the command are passed on; settings come from
``offload.toml`` / ``OFFLOAD_*`` as usual (``OFFLOAD_CONFIG`` names the file).
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources

from server.cli.output import say


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the server: gunicorn with offload's config",
                       description="exec gunicorn -c <offload's gunicorn.conf.py> [ARGS...]")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="more gunicorn arguments")
    p.set_defaults(start=serve_argv)
    p = sub.add_parser("pool", help="run the pool alone (python -m executor)",
                       description="exec python -m executor [ARGS...]")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="more arguments for the pool")
    p.set_defaults(start=pool_argv)


def gunicorn_config() -> str:
    """The path of offload's gunicorn config file, as installed."""
    return str(resources.files("config").joinpath("gunicorn.conf.py"))


def serve_argv(extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", gunicorn_config(), *extra]


def pool_argv(extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "executor", *extra]


def start(args: argparse.Namespace) -> int:
    """Replace this process with the command; returns only if it cannot start."""
    extra = list(args.extra)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    argv = args.start(extra)
    try:
        os.execv(argv[0], argv)
    except OSError as exc:
        say(f"offload: cannot start {' '.join(argv)}: {exc}")
    return 69
