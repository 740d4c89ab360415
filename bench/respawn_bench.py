"""Time from SIGKILL of the pool (under gunicorn) to /readyz answering 200 again.

Usage: .venv/bin/python bench/respawn_bench.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.procs import Env, ServerHandle

# The keeper backs off when the pool dies within 10 s of starting; wait longer
# than that between rounds so each one measures a normal respawn.
SETTLE_S = 11.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    env = Env(Path(tempfile.mkdtemp(prefix="offload-respawn-")), log_level="warning")
    server = ServerHandle(env)
    try:
        for i in range(opts.rounds):
            pid = server.pool_pid()
            assert pid is not None
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            while not (server.http("GET", "/readyz")[0] == 200
                       and server.pool_pid() not in (None, pid)):
                time.sleep(0.02)
            print(f"round {i + 1}: pool SIGKILL -> /readyz 200 again in "
                  f"{time.monotonic() - t0:.2f} s")
            if i + 1 < opts.rounds:
                time.sleep(SETTLE_S)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
