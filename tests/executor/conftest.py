"""Fixtures for the executor tests: pools with settings chosen per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import Env, PoolHandle


@pytest.fixture
def make_pool(tmp_path: Path) -> Iterator[Callable[..., PoolHandle]]:
    """``make_pool(**settings)``: a real pool on a private Env with those settings
    (written to its offload.toml before it starts); stopped at teardown."""
    handles: list[PoolHandle] = []

    def make(**settings: Any) -> PoolHandle:
        handle = PoolHandle(Env(tmp_path, **settings))
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        handle.stop()
