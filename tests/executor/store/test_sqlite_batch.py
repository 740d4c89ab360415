"""A batch whose transaction SQLite itself rolled back (a full disk, an I/O
error) raises ``BatchLost`` on every later write, and commits nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor.store import SQLiteStore
from executor.store.records import BatchLost, NewTask

T0 = 1_700_000_000.0


def test_writes_after_sqlite_rolled_the_batch_back_raise_batch_lost(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "offload.db"))
    try:
        with pytest.raises(BatchLost), store.batch():
            store.enqueue([NewTask("a", b"\x92\x90\x80", 0, 1.0)], T0, sync=False)
            store._s.conn.execute("ROLLBACK")  # as SQLite does on SQLITE_FULL
            store.enqueue([NewTask("b", b"\x92\x90\x80", 0, 1.0)], T0, sync=False)
        assert store.counts()["pending"] == 0
    finally:
        store.close()
