"""Module-level functions for the ``server.fastapi.install`` tests (``add_task``
needs importable functions); each appends to ``DONE`` in this process."""

from __future__ import annotations

from typing import Any

DONE: list[Any] = []


def note(label: str) -> None:
    DONE.append(label)


def broken(label: str) -> None:
    DONE.append(label)
    raise LookupError(f"{label} is broken")
