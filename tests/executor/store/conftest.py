"""The store contract suite runs once per backend.

A backend is a factory that, given the test's request and a fresh temporary
directory, returns the URL of an empty store. To add one (e.g. ``"redis"``),
add its factory to ``BACKENDS`` (and to ``SHARED`` if several pools may
share it); every test in test_contract.py then runs against it too, and
every test in test_shared_contract.py too if it is shared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from executor.store import Store, open_store


def _sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'tasks.db'}"


def _postgres_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # a fresh database on the run's private server (tests/support/postgres.py)
    return str(request.getfixturevalue("postgres_url"))


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "sqlite": _sqlite_url, "postgres": _postgres_url}
SHARED = ("postgres",)  # backends several pools write at once


@pytest.fixture(params=sorted(BACKENDS))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store of each backend."""
    return BACKENDS[request.param](request, tmp_path)


@pytest.fixture(params=SHARED)
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store of each shared backend."""
    return BACKENDS[request.param](request, tmp_path)


def _opener(url: str) -> Iterator[Callable[[], Store]]:
    opened: list[Store] = []

    def open_() -> Store:
        opened.append(open_store(url))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def open_url(store_url: str) -> Iterator[Callable[[], Store]]:
    """Opens (or reopens) the test's store; everything opened is closed at teardown."""
    yield from _opener(store_url)


@pytest.fixture
def open_shared(shared_url: str) -> Iterator[Callable[[], Store]]:
    """Opens one more connection (a store, as one pool would) to the test's
    shared store; each is closed at teardown."""
    yield from _opener(shared_url)


@pytest.fixture
def store(open_url: Callable[[], Store]) -> Store:
    """An open, empty store of each backend."""
    return open_url()
