"""Several real offload servers ("hosts") sharing one PostgreSQL database.

Each host is a whole server (gunicorn, HTTP workers, pool, executors) with
its own config, run directory, port and logs; only the database is shared.
Their executors see ``TEST_HOST`` (``a``, ``b``, ...) in the environment and
all write traces to one shared directory, so a trace line says which host
ran a task.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from tests.support.procs import Env, ServerHandle, kill_session, session_pids


class Host:
    """One server of the group: ``server`` (a ServerHandle) and its name."""

    def __init__(self, name: str, tmp: Path, store_url: str, trace_dir: Path,
                 **settings: Any) -> None:
        self.name = name
        home = tmp / f"host-{name}"
        home.mkdir()
        self.env = Env(home, store_url=store_url, **settings)
        self.env.extra_env["TEST_HOST"] = name
        self.env.trace_dir = trace_dir
        self.server: ServerHandle | None = None

    def start(self) -> ServerHandle:
        self.server = ServerHandle(self.env)
        return self.server

    @property
    def up(self) -> ServerHandle:
        assert self.server is not None, f"host {self.name} is not started"
        return self.server

    def sigkill(self) -> None:
        """SIGKILL every process of the host at once (a machine that dies)."""
        kill_session(self.up.pid)

    def pause(self, sig: int = signal.SIGSTOP) -> None:
        """SIGSTOP (or SIGCONT) every process of the host (a machine that stalls)."""
        for pid in session_pids(self.up.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def stop(self) -> None:
        if self.server is not None:
            self.pause(signal.SIGCONT)
            self.server.stop()


@contextlib.contextmanager
def hosts(n: int, tmp: Path, store_url: str, **settings: Any) -> Iterator[list[Host]]:
    """``n`` started hosts on ``store_url``, stopped at the end whatever happens."""
    trace_dir = tmp / "trace"
    trace_dir.mkdir(exist_ok=True)
    group = [Host(chr(ord("a") + i), tmp, store_url, trace_dir, **settings) for i in range(n)]
    try:
        for host in group:
            host.start()
        yield group
    finally:
        for host in group:
            host.stop()


def trace(trace_dir: Path, name: str) -> list[str]:
    path = trace_dir / name
    return path.read_text().split("\n")[:-1] if path.exists() else []


def query(url: str, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
    """Read the shared database directly (what the test observes, not how offload works)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()
