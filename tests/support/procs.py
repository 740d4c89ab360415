"""Start real offload processes for tests, wait on conditions, clean up.

Every process a test starts runs in its own session; teardown kills every
process of that session (executors put themselves in their own process
groups, but never leave the session), so nothing outlives a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from executor.client.client import PoolClient
from executor.wire.codec import encode_call

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout_s: float = 30.0, interval_s: float = 0.05,
             what: str = "condition") -> T:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing may not be up yet
            last_exc = exc
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}"
                         + (f" (last error: {last_exc!r})" if last_exc else ""))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _live_processes() -> Iterator[tuple[int, list[str]]]:
    """``(pid, fields of /proc/<pid>/stat after the command)`` of every live
    (not zombie) process: ``fields[1]`` is the parent, ``fields[3]`` the session."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        if fields[0] != "Z":
            yield int(entry), fields


def session_pids(sid: int) -> list[int]:
    """Every live process in session ``sid``."""
    return [pid for pid, fields in _live_processes() if int(fields[3]) == sid]


def template_pids(pool_pid: int) -> list[int]:
    """Live template processes (``executor.worker.template``) among ``pool_pid``'s children."""
    found = []
    for pid, fields in _live_processes():
        if int(fields[1]) != pool_pid:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"executor.worker.template" in cmd:
            found.append(pid)
    return found


def kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid``."""
    for pid in session_pids(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _remove_dir(path: str, owner_pid: int) -> None:
    """Remove ``path``, unless this is a forked child of the process that made it."""
    if os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)


class Env:
    """A private place for one test server: config file, store, run dir, traces."""

    def __init__(self, tmp: Path, **settings: Any) -> None:
        self.tmp = tmp
        self.run_dir = tempfile.mkdtemp(prefix="of-", dir="/tmp")
        # Removed once this Env is gone (after the test that made it, whose
        # handles are stopped by then and may be restarted on it until then),
        # or at the latest when the test process exits.
        weakref.finalize(self, _remove_dir, self.run_dir, os.getpid())
        self.trace_dir = tmp / "trace"
        self.trace_dir.mkdir(exist_ok=True)
        self.port = free_port()
        base: dict[str, Any] = {
            "bind": f"127.0.0.1:{self.port}", "workers": 2, "executors": 2,
            "task_modules": ["tests.support.tasks"],
            "store_url": f"sqlite:///{tmp / 'offload.db'}", "run_dir": self.run_dir,
            "retry_backoff_s": 0.1, "kill_grace_s": 0.5, "graceful_timeout_s": 5.0,
            "log_level": "info",
        }
        base.update(settings)
        # A fixed number of executors unless a test asks for autoscaling: most
        # tests count on which executor runs what (write_config keeps it so).
        self._fixed_executors = "executors_max" not in settings
        base.setdefault("executors_max", base["executors"])
        self.settings = base
        self.extra_env: dict[str, str] = {}  # more environment for the processes
        self.config_path = tmp / "offload.toml"
        self.write_config()

    def write_config(self, **changes: Any) -> None:
        """(Re)write offload.toml with the settings plus ``changes``."""
        wanted = changes.get("executors")
        if self._fixed_executors and isinstance(wanted, int) and wanted >= 1:
            changes.setdefault("executors_max", wanted)  # a bad value stays the only one
        self.settings.update(changes)
        self.config_path.write_text("".join(f"{k} = {json.dumps(v)}\n"
                                            for k, v in self.settings.items()))

    @property
    def socket_path(self) -> str:
        return os.path.join(self.run_dir, "pool.sock")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env["OFFLOAD_CONFIG"] = str(self.config_path)
        env["OFFLOAD_TEST_DIR"] = str(self.trace_dir)
        env["PYTHONPATH"] = str(ROOT)
        for k in list(env):
            if k.startswith("OFFLOAD_") and k not in ("OFFLOAD_CONFIG", "OFFLOAD_TEST_DIR"):
                del env[k]
        env.update(self.extra_env)
        return env

    def trace(self, name: str) -> list[str]:
        path = self.trace_dir / name
        return path.read_text().split("\n")[:-1] if path.exists() else []


class Proc:
    """A started process (its own session) with its output in a log file."""

    def __init__(self, cmd: list[str], env: Env, name: str) -> None:
        self.log_path = env.tmp / f"{name}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(cmd, cwd=ROOT, env=env.environ(), stdout=self.log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, wait, then kill whatever is left of the session."""
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout_s)
        kill_session(self.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self.log.close()


class PoolHandle(Proc):
    """``python -m executor`` (or ``cmd``, another pool entry point) with a
    blocking client for tests; ready to answer once built."""

    def __init__(self, env: Env, cmd: list[str] | None = None) -> None:
        super().__init__(cmd or [PYTHON, "-m", "executor", "--config", str(env.config_path)],
                         env, "pool")
        self.env = env
        try:
            wait_for(lambda: self.call("health", timeout_s=1)["executors_up"] >= 1, 60,
                     what="the pool to be ready")
        except AssertionError:
            self.stop()
            raise AssertionError(f"pool did not start:\n{self.output()[-3000:]}") from None

    def call(self, op: str, args: dict[str, Any] | None = None, timeout_s: float = 30) -> Any:
        return call(self.env.socket_path, op, args, timeout_s)

    def submit(self, kind: str, *args: Any, **opts: Any) -> str:
        kwargs = opts.pop("kwargs", {})
        spec = {"kind": kind, "payload": encode_call(list(args), kwargs), **opts}
        return str(self.call("submit", {"tasks": [spec]})["tasks"][0]["id"])

    def wait(self, task_id: str, timeout_s: float = 30) -> dict[str, Any]:
        """Wait until the task is finished and return its record."""
        return wait_for(lambda: _finished(self.call("get", {"id": task_id, "wait_s": 1})),
                        timeout_s, what=f"task {task_id} to finish")


def _finished(rec: dict[str, Any]) -> dict[str, Any] | None:
    return rec if rec["status"] in ("succeeded", "failed", "cancelled") else None


def call(path: str, op: str, args: dict[str, Any] | None = None, timeout_s: float = 30) -> Any:
    """One request to the pool at ``path`` (a fresh connection)."""

    async def go() -> Any:
        client = PoolClient(path)
        try:
            return await client.call(op, args, timeout_s=timeout_s)
        finally:
            await client.close()

    return asyncio.run(go())


class ServerHandle(Proc):
    """``gunicorn -c config/gunicorn.conf.py`` on a free port."""

    def __init__(self, env: Env, ready: bool = True) -> None:
        super().__init__([GUNICORN, "-c", "config/gunicorn.conf.py"], env, "gunicorn")
        self.env = env
        if ready:
            try:
                wait_for(lambda: self.http("GET", "/readyz")[0] == 200, 90,
                         what="gunicorn /readyz")
            except AssertionError:
                self.stop()
                raise AssertionError(f"server did not start:\n{self.output()[-3000:]}") from None

    def http(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             raw: bytes | None = None, timeout_s: float = 30) -> tuple[int, Any, dict[str, str]]:
        """One HTTP request; returns (status, parsed JSON or text, headers)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                             else None)
        req = urllib.request.Request(self.env.url + path, data=data, method=method,
                                     headers={"content-type": "application/json",
                                              **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                status, payload, hdrs = resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            status, payload, hdrs = err.code, err.read(), dict(err.headers)
        try:
            return status, json.loads(payload), hdrs
        except ValueError:
            return status, payload.decode(errors="replace"), hdrs

    def wait_task(self, task_id: str, timeout_s: float = 30) -> dict[str, Any]:
        """Long-poll until the task is finished; return its record."""
        def done() -> dict[str, Any] | None:
            status, rec, _ = self.http("GET", f"/tasks/{task_id}?wait=2")
            return rec if status == 200 and rec["status"] in (
                "succeeded", "failed", "cancelled") else None
        return wait_for(done, timeout_s, what=f"task {task_id} to finish")

    def pool_pid(self) -> int | None:
        """The pid of the pool process (``python -m executor``) in this server's session."""
        for pid in session_pids(self.pid):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"-m" in cmd and cmd[cmd.index(b"-m") + 1] == b"executor":
                return pid
        return None


@contextlib.contextmanager
def running(factory: Callable[[], T]) -> Iterator[T]:
    """Start something with ``factory``; stop it at the end whatever happens."""
    proc = factory()
    try:
        yield proc
    finally:
        proc.stop()  # type: ignore[attr-defined]
