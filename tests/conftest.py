"""Shared fixtures: a private environment, a real pool, a real gunicorn server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import Env, PoolHandle, ServerHandle


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
