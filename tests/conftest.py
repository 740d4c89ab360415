"""Shared fixtures: a private environment, a real pool, a real gunicorn server."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import PostgresServer, running_server
from tests.support.procs import Env, PoolHandle, ServerHandle


@pytest.fixture
def run_dir() -> Iterator[str]:
    """A directory for a socket: AF_UNIX paths are limited to ~107 bytes, and
    pytest's tmp_path can be longer, so it is short and under /tmp."""
    path = tempfile.mkdtemp(prefix="of-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    """Config, store, socket dir and trace dir private to one test."""
    return Env(tmp_path)


@pytest.fixture
def pool(env: Env) -> Iterator[PoolHandle]:
    """A real pool (``python -m executor``) with 2 executors on ``env``."""
    handle = PoolHandle(env)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def server(env: Env) -> Iterator[ServerHandle]:
    """Real gunicorn with config/gunicorn.conf.py on a free port, pool included."""
    handle = ServerHandle(env)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the whole run (tests.support.postgres),
    started on first use and stopped at the end."""
    with running_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database on the test server, dropped afterwards."""
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)
