"""``python -m executor``: run the pool on its own (hosts that only execute).

Options: ``--config PATH`` (default $OFFLOAD_CONFIG or config/offload.toml),
``--lifeline-fd N`` (used by the supervisor: stop when it reads EOF).

Under a supervisor (``--lifeline-fd``), a SQLite store held by another pool
is waited for, up to the longest a pool's stop takes (``lock_wait_s``): it
is the pool of a gunicorn master that was killed, still storing its HTTP
workers' last calls and letting its running tasks finish
(``executor.pool.keeper``), while systemd has started a new master. Run on
its own, a pool refuses a store in use at once (exit status 4).
"""

from __future__ import annotations

import argparse
import logging
import select
import sys
import time

import uvloop

from config import ConfigError, Settings, run_dir_for, start_process
from config.paths import ensure_private_dir
from executor.pool.keeper import WORKERS_DRAIN_S
from executor.pool.pool import Pool
from executor.store import StoreError, StoreLocked

log = logging.getLogger("offload.pool")

LOCK_POLL_S = 0.05


def lock_wait_s(settings: Settings) -> float:
    """How long a new pool waits for the store's writer lock: what a stopping
    pool may take (workers' drain, running tasks' grace, the keeper's kill)."""
    return WORKERS_DRAIN_S + settings.graceful_timeout_s + 10.0


def open_pool(settings: Settings, config: str | None, lifeline_fd: int | None) -> Pool | None:
    """Make the pool; under a supervisor (``lifeline_fd``), wait
    (``lock_wait_s``) while another pool holds the store. ``None`` if the
    lifeline closed meanwhile (the supervisor is gone). Raises
    ``StoreError`` (``StoreLocked`` at once on its own, else once the wait
    is over)."""
    deadline = time.monotonic() + (0.0 if lifeline_fd is None else lock_wait_s(settings))
    poller = select.poll()
    if lifeline_fd is not None:
        poller.register(lifeline_fd, select.POLLIN)
    waiting_since: float | None = None
    while True:
        try:
            pool = Pool(settings, config, lifeline_fd)
        except StoreLocked as exc:
            if time.monotonic() >= deadline:
                raise
            if waiting_since is None:
                waiting_since = time.monotonic()
                log.warning("%s; waiting up to %.0f s for it to stop", exc,
                            lock_wait_s(settings))
            if poller.poll(LOCK_POLL_S * 1000):
                return None  # the lifeline: never written, so EOF
            continue
        if waiting_since is not None:
            log.info("the store is ours after %.1f s", time.monotonic() - waiting_since)
        return pool


def main(argv: list[str] | None = None) -> int:
    """Parse options, load settings, run the pool until it is stopped."""
    parser = argparse.ArgumentParser(prog="python -m executor", description=__doc__)
    parser.add_argument("--config", default=None, help="path of offload.toml")
    parser.add_argument("--lifeline-fd", type=int, default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    settings = start_process(opts.config)
    try:  # before anything is started: an unsafe run directory stops us cleanly
        ensure_private_dir(run_dir_for(settings))
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    try:
        pool = open_pool(settings, opts.config, opts.lifeline_fd)
    except StoreError as exc:  # cannot open, or another pool holds it
        log.error("%s", exc)
        return 4
    if pool is None:
        log.warning("the supervisor is gone: stopping")
        return 0
    try:
        uvloop.run(pool.run())
    except ConfigError as exc:  # the run directory made unsafe since the check above
        log.error("%s", exc)
        return 2
    except RuntimeError as exc:  # task code that does not import, mostly
        log.error("%s", exc)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
