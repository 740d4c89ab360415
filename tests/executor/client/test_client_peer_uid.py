"""PoolClient refuses a "pool" socket served by another user (SO_PEERCRED):
nothing is written to it, and the caller gets PoolUnavailable naming the
socket and the foreign uid.

The foreign listener is a tiny stdlib server run as uid 23457 through
``setpriv`` (needs root; the test machine runs tests as root).
"""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop

from executor.client.client import PoolClient
from executor.wire.errors import PoolUnavailable

OTHER_UID = 23457
SETPRIV = shutil.which("setpriv")

# Accepts one connection, counts the bytes it receives until EOF, says so.
FAKE_POOL = """
import socket, sys
srv = socket.socket(socket.AF_UNIX)
srv.bind(sys.argv[1])
srv.listen(8)
print("ready", flush=True)
conn, _ = srv.accept()
conn.settimeout(20)
got = 0
try:
    while data := conn.recv(65536):
        got += len(data)
except OSError:
    pass
print(f"received {got}", flush=True)
"""

pytestmark = [
    pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a listener as another uid"),
    pytest.mark.skipif(SETPRIV is None, reason="needs setpriv (util-linux)"),
]


@pytest.fixture
def foreign_dir() -> Iterator[str]:
    """A short directory under /tmp (AF_UNIX paths are short) owned by OTHER_UID."""
    path = tempfile.mkdtemp(prefix="of-peer-", dir="/tmp")
    os.chown(path, OTHER_UID, OTHER_UID)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def foreign_pool(foreign_dir: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """(socket path, process) of a listener running as OTHER_UID, once it listens."""
    path = os.path.join(foreign_dir, "pool.sock")
    assert SETPRIV is not None
    proc = subprocess.Popen(
        [SETPRIV, f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups",
         sys.executable, "-I", "-c", FAKE_POOL, path],
        cwd=foreign_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""
        assert line == "ready\n", f"the foreign listener did not start: {line!r}"
        assert os.stat(path).st_uid == OTHER_UID
        yield path, proc
    finally:
        if proc.poll() is None:
            proc.kill()  # our own child, by its handle
        proc.wait(10)


Runner = Callable[[Coroutine[Any, Any, None]], None]


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_a_socket_served_by_another_uid_is_refused(
        foreign_pool: tuple[str, subprocess.Popen[str]], run: Runner) -> None:
    path, proc = foreign_pool

    async def main() -> None:
        client = PoolClient(path)
        try:
            with pytest.raises(PoolUnavailable) as err:
                await client.call("submit", {"tasks": [{"kind": "secret", "payload": b"x"}]},
                                  timeout_s=5)
            message = str(err.value)
            assert f"refused the pool socket {path}" in message
            assert f"runs as uid {OTHER_UID}, not as us (uid {os.getuid()})" in message
            assert client._conn is None  # nothing kept: the next call checks anew
        finally:
            await client.close()

    run(main())
    out, _ = proc.communicate(timeout=20)
    assert out.strip() == "received 0"  # the request never reached it
