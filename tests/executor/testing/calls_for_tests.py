"""Functions handed off in the tests of ``executor.testing``: module-level, so
``add_task`` accepts them, and recording what they received in ``SEEN``, a
list of this process (the test modes run calls in the test process)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

from executor import Retry, task

SEEN: list[tuple[str, Any]] = []
ATTEMPTS: Counter[str] = Counter()


def reset() -> None:
    SEEN.clear()
    ATTEMPTS.clear()


@dataclass
class Point:
    x: int
    y: int


def record(label: str, value: Any = None, **kwargs: Any) -> str:
    """Record what it received."""
    ATTEMPTS[label] += 1
    SEEN.append((label, (value, kwargs) if kwargs else value))
    return label


async def record_async(label: str) -> str:
    """An ``async def`` call: it runs on an event loop of its own."""
    await asyncio.sleep(0)
    ATTEMPTS[label] += 1
    SEEN.append((label, "async"))
    return label


def fail(label: str) -> None:
    """Fail every attempt."""
    ATTEMPTS[label] += 1
    SEEN.append((label, "fail"))
    raise ValueError(f"{label} fails on purpose")


@task(max_retries=2)
def flaky(label: str, succeed_on: int) -> int:
    """Fail until attempt ``succeed_on``."""
    ATTEMPTS[label] += 1
    SEEN.append((label, ATTEMPTS[label]))
    if ATTEMPTS[label] < succeed_on:
        raise ConnectionError(f"{label}: attempt {ATTEMPTS[label]} fails")
    return ATTEMPTS[label]


@task(max_retries=5, retry_on=(ConnectionError,))
def picky(label: str) -> None:
    """Retried on ConnectionError only; raises KeyError."""
    ATTEMPTS[label] += 1
    raise KeyError(label)


@task(max_retries=1)
def asks_retry(label: str) -> None:
    """Asks for a retry in an hour: retried at once in a test mode."""
    ATTEMPTS[label] += 1
    raise Retry(delay_s=3600)


def returns_unencodable(label: str) -> object:
    """Its result cannot be sent back: fails, not retried."""
    ATTEMPTS[label] += 1
    return object()


class Mailer:
    def send(self, to: str) -> None:
        """A bound method: refused by add_task."""


@task(name="greet")
def greet(name: str, punctuation: str = "!") -> str:
    """A kind submitted by name through server.Client."""
    SEEN.append(("greet", name))
    return f"hello {name}{punctuation}"


@task(name="explode")
def explode(label: str) -> None:
    """A kind that fails every attempt."""
    raise ValueError(f"{label} fails on purpose")
