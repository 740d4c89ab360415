"""An unsafe run directory under real gunicorn: refused at start with a
one-line message (no traceback), refused on HUP with the server still
serving on its running settings."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.procs import Env, ServerHandle, session_pids, wait_for

OTHER_UID = 23457


def _world_writable(run_dir: str) -> Callable[[], None]:
    os.chmod(run_dir, 0o777)
    return lambda: os.chmod(run_dir, 0o700)


def _owned_by_another_uid(run_dir: str) -> Callable[[], None]:
    if os.getuid() != 0:
        pytest.skip("needs root to chown the run directory to another uid")
    os.chown(run_dir, OTHER_UID, OTHER_UID)
    return lambda: os.chown(run_dir, os.getuid(), os.getgid())


SPOILERS = [pytest.param(_world_writable, id="world-writable"),
            pytest.param(_owned_by_another_uid, id="another-owner")]


def http_workers(server: ServerHandle) -> set[int]:
    """The live HTTP worker pids (gunicorn processes but the master)."""
    def cmdline(pid: int) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return b""
    return {pid for pid in session_pids(server.pid)
            if pid != server.pid and b"gunicorn" in cmdline(pid)}


@pytest.mark.parametrize("spoil", SPOILERS)
def test_an_unsafe_run_dir_stops_the_start_with_a_clear_message(
        env: Env, spoil: Callable[[str], Callable[[], None]]) -> None:
    restore = spoil(env.run_dir)
    try:
        server = ServerHandle(env, ready=False)
        try:
            server.popen.wait(60)
        finally:
            server.stop()
        out = server.output()
        assert server.popen.returncode != 0, out[-3000:]
        assert f"offload: unsafe run directory {env.run_dir}: it " in out, out[-3000:]
        assert "Traceback" not in out, out[-3000:]
    finally:
        restore()


@pytest.mark.parametrize("spoil", SPOILERS)
def test_a_hup_with_an_unsafe_run_dir_keeps_the_server_serving(
        server: ServerHandle, spoil: Callable[[str], Callable[[], None]]) -> None:
    old_workers = wait_for(lambda: (w := http_workers(server)) and len(w) == 2 and w, 60,
                           what="2 HTTP workers")
    restore = spoil(server.env.run_dir)
    try:
        server.signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in server.output() or server.popen.poll() is not None,
                 30, what="the reload to be refused")
        assert server.popen.poll() is None, server.output()[-3000:]
        assert f"unsafe run directory {server.env.run_dir}" in server.output()
        # HUP replaces every HTTP worker; the new ones boot on the running settings.
        wait_for(lambda: not (w := http_workers(server)) & old_workers and len(w) == 2, 60,
                 what="2 new HTTP workers after HUP")
        for _ in range(4):
            status, rec, _ = server.http("POST", "/tasks", {"kind": "echo", "args": ["on"]})
            assert status == 202, rec
            assert server.wait_task(rec["id"])["status"] == "succeeded"
        assert server.popen.poll() is None, server.output()[-3000:]
        assert "Worker failed to boot" not in server.output()
    finally:
        restore()
