"""``python -m executor``: run the pool on its own (hosts that only execute).

Options: ``--config PATH`` (default $OFFLOAD_CONFIG or config/offload.toml),
``--lifeline-fd N`` (used by the supervisor: stop when it reads EOF).
"""

from __future__ import annotations

import argparse
import logging
import sys

import uvloop

from config import ConfigError, run_dir_for, start_process
from config.paths import ensure_private_dir
from executor.pool.pool import Pool
from executor.store import StoreError


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
        logging.getLogger("offload.pool").error("%s", exc)
        return 2
    try:
        pool = Pool(settings, opts.config, opts.lifeline_fd)
    except StoreError as exc:  # cannot open, or another pool holds it
        logging.getLogger("offload.pool").error("%s", exc)
        return 4
    try:
        uvloop.run(pool.run())
    except ConfigError as exc:  # the run directory made unsafe since the check above
        logging.getLogger("offload.pool").error("%s", exc)
        return 2
    except RuntimeError as exc:  # task code that does not import, mostly
        logging.getLogger("offload.pool").error("%s", exc)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
