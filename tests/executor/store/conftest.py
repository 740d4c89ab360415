"""The store contract suite runs once per backend.

A backend is a factory that, given a fresh temporary directory, returns the
URL of an empty store. To add one (e.g. ``"redis"``), add its factory to
``BACKENDS``; every test in test_contract.py then runs against it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from executor.store import Store, open_store


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'tasks.db'}"


BACKENDS: dict[str, Callable[[Path], str]] = {"sqlite": _sqlite_url}


@pytest.fixture(params=sorted(BACKENDS))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store of each backend."""
    return BACKENDS[request.param](tmp_path)


@pytest.fixture
def open_url(store_url: str) -> Iterator[Callable[[], Store]]:
    """Opens (or reopens) the test's store; everything opened is closed at teardown."""
    opened: list[Store] = []

    def open_() -> Store:
        opened.append(open_store(store_url))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_url: Callable[[], Store]) -> Store:
    """An open, empty store of each backend."""
    return open_url()
