"""An executor's limits on itself (no processes): when it recycles, the
jittered count, and the resident memory it reads after each task."""

from __future__ import annotations

from typing import Any

import pytest

from executor.worker.limits import Limits, jittered, recycle_reason, rss_mb


def _done(reason: str | None) -> dict[str, Any]:
    error = None if reason is None else {"reason": reason, "message": "", "traceback": ""}
    return {"id": "t", "ok": reason is None, "error": error}


@pytest.mark.parametrize(("reason", "asynchronous", "expected"), [
    ("memory", False, "memory"),
    ("memory", True, "memory"),
    ("timeout", False, "timeout"),  # SIGALRM interrupted a def task: state untrusted
    ("timeout", True, None),  # an async task's soft timeout is a clean cancellation
    ("error", False, None),
    (None, False, None),
])
def test_a_task_that_interrupted_the_process_recycles_it(
        reason: str | None, asynchronous: bool, expected: str | None) -> None:
    assert recycle_reason(_done(reason), 10.0, Limits(), 1, 0, asynchronous) == expected


def test_memory_over_max_memory_mb_then_the_task_count_recycle() -> None:
    limits = Limits(max_memory_mb=100)
    assert recycle_reason(_done(None), 100.0, limits, 1, 0, False) is None
    assert recycle_reason(_done(None), 100.5, limits, 1, 0, False) == "memory"
    assert recycle_reason(_done(None), 50.0, limits, 9, 10, False) is None
    assert recycle_reason(_done(None), 50.0, limits, 10, 10, False) == "recycled"
    assert recycle_reason(_done(None), 500.0, Limits(), 10**6, 0, False) is None  # no limits


def test_jittered_stays_within_a_tenth_below_the_count() -> None:
    assert jittered(0) == 0 and jittered(1) == 1
    seen = {jittered(100) for _ in range(2000)}
    assert min(seen) >= 90 and max(seen) <= 100
    assert len(seen) > 1  # jittered, not the same count for every executor


def test_rss_mb_reads_this_process_resident_memory() -> None:
    before = rss_mb()
    blob = b"x" * (64 * 1024 * 1024)  # written, so resident
    after = rss_mb()
    assert before > 0 and after - before > 32
    del blob
