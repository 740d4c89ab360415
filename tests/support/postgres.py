"""A real, private PostgreSQL server for tests.

``PostgresServer`` runs ``initdb`` in a fresh temporary directory and starts
``postgres`` on a Unix socket only (``listen_addresses = ''``), with fsync on
(tests check durability) and password (SCRAM) authentication. When the tests
run as root it runs as an unprivileged user (PostgreSQL refuses root): the
``nobody`` account, which owns the temporary directory. Nothing here uses or
depends on a server that happens to be running on the machine.

The binaries are found under ``/usr/lib/postgresql/<version>/bin`` (Debian's
``postgresql`` package, which ``make test`` installs when missing).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg

USER = "offload"  # the database superuser initdb creates
START_WAIT_S = 60.0


def find_bindir() -> str:
    """The newest ``/usr/lib/postgresql/*/bin`` that holds ``initdb``; raises
    RuntimeError (saying how to install it) if there is none."""
    found = [d for d in glob.glob("/usr/lib/postgresql/*/bin")
             if os.access(os.path.join(d, "initdb"), os.X_OK)]
    if not found:
        raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                           "run `make test` as root, or `apt-get install postgresql`")
    return max(found, key=lambda d: [int(p) for p in Path(d).parent.name.split(".")
                                     if p.isdigit()])


def _die_with_parent() -> None:
    """In the server's child, before exec: SIGQUIT (PostgreSQL's immediate stop)
    when the test process dies, however it dies, so no server outlives a run."""
    ctypes.CDLL(None, use_errno=True).prctl(1, 3, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGQUIT


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run the server as: ``nobody`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


class PostgresServer:
    """One private PostgreSQL cluster; ``start`` it, ``stop`` it, ``restart`` it.

    ``url(dbname)`` is a libpq URI with the password; ``create_database`` and
    ``drop_database`` give each test its own database.
    """

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.owner = _run_as()
        # Short and under /tmp: a Unix socket path is limited to ~107 bytes.
        self.root = tempfile.mkdtemp(prefix="ofpg-", dir="/tmp")
        self.data = os.path.join(self.root, "data")
        self.socket_dir = self.root
        self.log_path = os.path.join(self.root, "postgres.log")
        self.password = secrets.token_hex(12)
        self.proc: subprocess.Popen[bytes] | None = None
        if self.owner is not None:
            os.chown(self.root, *self.owner)
        os.chmod(self.root, 0o700)
        pwfile = os.path.join(self.root, "pw")
        with open(pwfile, "w") as f:
            f.write(self.password + "\n")
        if self.owner is not None:
            os.chown(pwfile, *self.owner)
        self._run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", USER,
                   "--pwfile", pwfile, "--auth-local=scram-sha-256", "--auth-host=reject",
                   "-E", "UTF8", "--locale=C", "--no-instructions"])
        os.unlink(pwfile)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as conf:
            conf.write(f"""
listen_addresses = ''
unix_socket_directories = '{self.socket_dir}'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 300
shared_buffers = 64MB
log_min_messages = warning
log_line_prefix = '%m [%p] '
""")

    def _run(self, cmd: list[str]) -> None:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root,
                             **self._as_owner())
        if out.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({out.returncode}):\n{out.stdout}{out.stderr}")

    def _as_owner(self) -> dict[str, int]:
        if self.owner is None:
            return {}
        return {"user": self.owner[0], "group": self.owner[1], "extra_groups": []}  # type: ignore[dict-item]

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                [os.path.join(self.bindir, "postgres"), "-D", self.data], cwd=self.root,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent, **self._as_owner())  # type: ignore[call-overload]
        finally:
            log.close()
        deadline = time.monotonic() + START_WAIT_S
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start:\n{self.log()[-3000:]}") \
                        from None
                time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (rolls back open transactions, checkpoints)
        or ``immediate`` (like a crash: no checkpoint, recovery at next start)."""
        if self.proc is None:
            return
        sig = {"smart": 15, "fast": 2, "immediate": 3}[mode]  # SIGTERM, SIGINT, SIGQUIT
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        """Stop the server (fast) and remove its directory."""
        try:
            self.stop("fast")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def url(self, dbname: str, *, password: bool = True) -> str:
        """A libpq URI for ``dbname`` over the Unix socket (``?host=/dir``)."""
        auth = f"{USER}:{self.password}" if password else USER
        host = urllib.parse.quote(self.socket_dir, safe="")
        return f"postgresql://{auth}@/{dbname}?host={host}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction in the ``postgres`` database."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self) -> str:
        """A new, empty database; returns its name."""
        name = "t_" + secrets.token_hex(6)
        self.admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(psycopg.Error):
            self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A started private server, destroyed at the end."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.destroy()
