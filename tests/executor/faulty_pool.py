"""``python -m tests.executor.faulty_pool --config PATH``: the real pool, except
that ``SQLiteStore.finish`` fails once, in the first turn that also stores new
tasks, as a full disk or an I/O error would fail a write (a narrow seam for
``test_store_faults``; everything else is the real pool)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from executor.store import sqlite
from executor.store.records import Outcome, StoreError, TaskRecord

_real_finish, _real_insert = sqlite.SQLiteStore.finish, sqlite.SQLiteStore._insert
_real_batch = sqlite.SQLiteStore.batch
_state = {"inserted": False, "failed": False}


def _insert(self: sqlite.SQLiteStore, *args: Any) -> Any:
    _state["inserted"] = True
    return _real_insert(self, *args)


@contextlib.contextmanager
def _batch(self: sqlite.SQLiteStore) -> Iterator[None]:
    _state["inserted"] = False
    with _real_batch(self):
        yield


def _finish(self: sqlite.SQLiteStore, outcomes: Sequence[Outcome]) -> list[TaskRecord]:
    if _state["inserted"] and not _state["failed"]:
        _state["failed"] = True
        print("FAULT: finish fails for", [o.id for o in outcomes], flush=True)
        raise StoreError("injected: database or disk is full; nothing was changed")
    return _real_finish(self, outcomes)


sqlite.SQLiteStore._insert = _insert  # type: ignore[method-assign]
sqlite.SQLiteStore.batch = _batch  # type: ignore[method-assign,assignment]
sqlite.SQLiteStore.finish = _finish  # type: ignore[method-assign]

if __name__ == "__main__":
    from executor.__main__ import main

    sys.exit(main(sys.argv[1:]))
