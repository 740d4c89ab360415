"""Pages of ``Store.list``, shared by the backends: the checks of its
arguments, the SQL conditions they make, and the cursor of the next page.

A page is ``ORDER BY seqno DESC`` with one row more than ``limit`` fetched
(its presence says there is a next page); the cursor is the ``seqno`` of
the page's last row. Backends differ only in the placeholder (``?`` for
SQLite, ``%s`` for psycopg) and in how a row becomes a record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from executor.store.records import STATUSES, StoreError

_CURSOR_MAX = 2**63  # a seqno is a signed 64-bit integer (SQLite's rowid, a bigint)
_Row = TypeVar("_Row", bound=Sequence[Any])


def page_filter(status: str | None, kind: str | None, limit: int, cursor: str | None,
                mark: str) -> tuple[str, list[Any]]:
    """The ``WHERE`` condition (with ``mark`` placeholders) and its parameters
    for a page filtered by ``status`` and ``kind``, after ``cursor``. Raises
    StoreError for an unknown status, a limit below 1 or a bad cursor."""
    if status is not None and status not in STATUSES:
        raise StoreError(f"unknown status {status!r}; statuses: {', '.join(STATUSES)}")
    if limit < 1:
        raise StoreError(f"limit must be at least 1, not {limit}")
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if cursor is not None:
        # A longer number cannot be a seqno (and SQLite would refuse to bind it).
        if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 19
                and int(cursor) < _CURSOR_MAX):
            raise StoreError(f"invalid cursor {cursor!r}: pass the cursor returned "
                             "with the previous page, or none for the first page")
        where.append(f"seqno < {mark}")
        params.append(int(cursor))
    if status is not None:
        where.append(f"status = {mark}")
        params.append(status)
    if kind is not None:
        where.append(f"kind = {mark}")
        params.append(kind)
    return " AND ".join(where), params


def page_rows(rows: list[_Row], limit: int) -> tuple[list[_Row], str | None]:
    """The page's rows (up to ``limit`` of the ``limit + 1`` fetched, each
    ending with its ``seqno``) and the cursor of the next page (``None`` on
    the last)."""
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, str(rows[-1][-1]) if more else None
