"""The keeper: supervises the pool on behalf of the gunicorn master.

``python -m executor.pool.keeper --lifeline-fd N [--watch-fd M] [--config PATH]``

The gunicorn master reaps *every* child with ``waitpid(-1)``, so it cannot
be trusted to hand us the pool's exit status. The master therefore starts
this small process instead, and the keeper is the pool's parent:

* it respawns the pool within a second when it dies (backing off up to 5 s
  if the pool keeps dying at start, e.g. task code that does not import);
* it reads the master's lifeline pipe: EOF means the master is gone (even
  by SIGKILL), and the keeper stops the pool and exits — nothing is left
  orphaned. The pool in turn reads the keeper's own lifeline. Not at once:
  the HTTP workers of a dead master stop taking requests, but still hand
  their last background calls to this pool; the keeper waits for EOF on
  the *workers pipe* (``--workers-fd``, ``server.lifeline``: every worker
  holds its write end until its calls are stored, or it exits), at most
  ``WORKERS_DRAIN_S``, keeping the pool up meanwhile;
* it holds the write end of the master's watch pipe (``--watch-fd``) and
  passes it on to each pool it starts, never writing to it: the master
  reads EOF once the keeper *and* its pool are gone, and only then starts a
  new keeper (one pool at a time owns the store);
* SIGHUP is forwarded to the pool (reload); SIGTERM stops the pool
  gracefully and then the keeper.

No event loop, no threads: a ``selectors`` loop over the lifeline, a pidfd
for the pool, and the signal wake-up pipe.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import selectors
import signal
import subprocess
import sys
import time

from config import start_process
from executor.pool.retry import RESPAWN_FIRST_S, respawn_delay_s

log = logging.getLogger("offload.keeper")

WORKERS_DRAIN_S = 10.0
"""How long the pool stays up, once the master is gone, for its HTTP workers
to store their last background calls. A new master on the same SQLite store
waits this long at most (plus the pool's graceful stop) for the store."""


class Keeper:
    """The supervision loop. ``run`` returns the keeper's exit code."""

    def __init__(self, lifeline_fd: int, config: str | None, graceful_s: float,
                 watch_fd: int | None = None, workers_fd: int | None = None) -> None:
        self.lifeline_fd = lifeline_fd
        self.watch_fd = watch_fd
        self.workers_fd = workers_fd
        self.config = config
        self.graceful_s = graceful_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.pidfd: int | None = None
        self.pool_lifeline_w: int | None = None
        self.started_at = 0.0
        self.backoff_s = RESPAWN_FIRST_S
        self.stopping = False
        self.pending_signals: list[int] = []  # signal numbers, handled by the loop

    def spawn(self) -> None:
        """Start the pool with a lifeline pipe whose write end we keep (and the
        master's watch pipe, which the pool holds without knowing it)."""
        r, w = os.pipe()
        cmd = [sys.executable, "-m", "executor", "--lifeline-fd", str(r)]
        if self.config:
            cmd += ["--config", self.config]
        held = (r,) if self.watch_fd is None else (r, self.watch_fd)
        self.proc = subprocess.Popen(cmd, pass_fds=held)
        os.close(r)
        self.pool_lifeline_w = w
        self.pidfd = os.pidfd_open(self.proc.pid)
        self.started_at = time.monotonic()
        log.info("pool started (pid %d)", self.proc.pid)

    def reap(self) -> str:
        """Collect the pool's exit status; close its handles."""
        assert self.proc is not None
        code = self.proc.wait()
        for fd in (self.pidfd, self.pool_lifeline_w):
            if fd is not None:
                os.close(fd)
        self.pidfd = self.pool_lifeline_w = None
        return f"signal {-code}" if code < 0 else f"exit {code}"

    def stop_pool(self) -> None:
        """Graceful stop: SIGTERM, wait up to the grace period (+5 s), then SIGKILL."""
        if self.proc is None or self.pidfd is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(self.graceful_s + 5)
        except subprocess.TimeoutExpired:
            log.error("pool did not stop in %.0f s: killing it", self.graceful_s + 5)
            self.proc.kill()
        self.reap()

    def run(self) -> int:
        """Supervise until the master leaves or we are told to stop."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, lambda s, f: self.pending_signals.append(int(s)))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sel = selectors.DefaultSelector()
        sel.register(self.lifeline_fd, selectors.EVENT_READ, "lifeline")
        sel.register(wake_r, selectors.EVENT_READ, "signal")
        self.spawn()
        respawn_at: float | None = None
        drained_by: float | None = None  # the master is gone: stop the pool by then
        while True:
            if self.pidfd is not None:
                sel.register(self.pidfd, selectors.EVENT_READ, "pool")
            wake = [t for t in (respawn_at, drained_by) if t is not None]
            timeout = None if not wake else max(0.0, min(wake) - time.monotonic())
            events = sel.select(timeout)
            if self.pidfd is not None:
                sel.unregister(self.pidfd)
            for key, _ in events:
                if key.data == "lifeline" and not os.read(self.lifeline_fd, 64):
                    sel.unregister(self.lifeline_fd)
                    if self.workers_fd is None:
                        log.info("the gunicorn master is gone: stopping the pool")
                        self.stop_pool()
                        return 0
                    log.warning("the gunicorn master is gone: the pool stays up until its "
                                "HTTP workers have stored their background calls (at most "
                                "%.0f s), then stops", WORKERS_DRAIN_S)
                    sel.register(self.workers_fd, selectors.EVENT_READ, "workers")
                    drained_by = time.monotonic() + WORKERS_DRAIN_S
                if key.data == "workers" and not os.read(key.fd, 64):
                    log.info("the HTTP workers have stored their background calls: "
                             "stopping the pool")
                    self.stop_pool()
                    return 0
                if key.data == "signal":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 64)
                if key.data == "pool":
                    status = self.reap()
                    lived = time.monotonic() - self.started_at
                    self.backoff_s = respawn_delay_s(self.backoff_s, lived)
                    log.error("pool exited (%s) after %.1f s: respawning in %.1f s",
                              status, lived, self.backoff_s)
                    respawn_at = time.monotonic() + self.backoff_s
            if drained_by is not None and time.monotonic() >= drained_by:
                log.error("the HTTP workers of the dead master still hold the workers pipe "
                          "after %.0f s: stopping the pool; background calls they have not "
                          "stored yet are lost", WORKERS_DRAIN_S)
                self.stop_pool()
                return 0
            while self.pending_signals:
                signum = self.pending_signals.pop(0)
                if signum == signal.SIGTERM:
                    self.stop_pool()
                    return 0
                if signum == signal.SIGHUP and self.proc is not None and self.pidfd is not None:
                    self.proc.send_signal(signal.SIGHUP)
            if respawn_at is not None and time.monotonic() >= respawn_at:
                respawn_at = None
                self.spawn()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m executor.pool.keeper")
    parser.add_argument("--lifeline-fd", type=int, required=True)
    parser.add_argument("--watch-fd", type=int, default=None)
    parser.add_argument("--workers-fd", type=int, default=None)
    parser.add_argument("--config", default=None)
    opts = parser.parse_args(argv)
    settings = start_process(opts.config)
    return Keeper(opts.lifeline_fd, opts.config, settings.graceful_timeout_s,
                  opts.watch_fd, opts.workers_fd).run()


if __name__ == "__main__":
    sys.exit(main())
