"""Retries with real executors: back-off that grows, poison tasks that stop,
``Retry``, ``retry_on``, per-submission ``max_retries``, timeouts as attempts."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from executor.pool.retry import RetryPolicy, should_retry
from executor.wire.errors import PoolError
from tests.executor.helpers import result, wait_status
from tests.support.procs import PoolHandle


def _starts(pool: PoolHandle, name: str) -> list[float]:
    return [float(line) for line in pool.env.trace(name)]


def test_flaky_task_succeeds_on_third_attempt_with_growing_backoff(pool: PoolHandle) -> None:
    rec = pool.wait(pool.submit("flaky", "flaky.log", 3))
    assert rec["status"] == "succeeded"
    assert rec["attempts"] == 3
    assert result(rec) == 3
    assert rec["error"] is None  # the last attempt's success clears the earlier error
    starts = _starts(pool, "flaky.log")
    assert len(starts) == 3
    gap1, gap2 = starts[1] - starts[0], starts[2] - starts[1]
    # flaky: retry_backoff_s=0.2, equal jitter: wait 1 in [0.1, 0.2], wait 2 in [0.2, 0.4].
    # Only the floors: a gap can exceed its wait by any amount on a loaded machine
    # (that the waits grow is test_equal_jitter_waits_never_shrink_until_the_cap).
    assert gap1 >= 0.1
    assert gap2 >= 0.2


def test_waiting_retry_is_retrying_with_not_before(pool: PoolHandle) -> None:
    task_id = pool.submit("flaky_slow", "slow.log", 2)
    waiting = wait_status(pool, task_id, "retrying")
    first_start = _starts(pool, "slow.log")[0]
    assert waiting["attempts"] == 1
    assert waiting["error"]["reason"] == "error"
    assert "ConnectionError: attempt 1 failed" in waiting["error"]["message"]
    # flaky_slow: retry_backoff_s=1.0, so the first wait is at least 0.5 s.
    assert waiting["not_before"] >= first_start + 0.5
    done = pool.wait(task_id)
    assert done["status"] == "succeeded"
    assert done["attempts"] == 2
    assert done["started_at"] >= waiting["not_before"]
    assert _starts(pool, "slow.log")[1] >= waiting["not_before"]


def test_poison_task_stops_after_max_retries_plus_one_attempts(pool: PoolHandle) -> None:
    rec = pool.wait(pool.submit("poison_segfault"))  # max_retries=2
    assert rec["status"] == "failed"
    assert rec["error"]["reason"] == "crash"
    assert "SIGSEGV" in rec["error"]["message"]
    assert rec["attempts"] == 3
    assert len(pool.env.trace("poison.log")) == 3
    assert pool.wait(pool.submit("noop"))["status"] == "succeeded"


def test_raise_retry_retries_after_its_delay_and_succeeds(pool: PoolHandle) -> None:
    rec = pool.wait(pool.submit("ask_retry", "ask.log"))
    assert rec["status"] == "succeeded"
    assert rec["attempts"] == 2
    assert result(rec) == "second time lucky"
    first, second = _starts(pool, "ask.log")
    assert second - first >= 0.3  # Retry(delay_s=0.3) from a point after the first start


def test_raise_retry_with_an_unusable_delay_uses_the_back_off(pool: PoolHandle) -> None:
    # Each of these used to reach the pool's arithmetic (or the store) and
    # leave the task "running" forever.
    delays = ["soon", float("nan"), float("inf"), -5.0, None]
    ids = [pool.submit("ask_retry", f"ask{i}.log", delay) for i, delay in enumerate(delays)]
    for task_id in ids:
        rec = pool.wait(task_id)
        assert (rec["status"], rec["attempts"]) == ("succeeded", 2)


def test_exception_outside_retry_on_is_not_retried(pool: PoolHandle) -> None:
    rec = pool.wait(pool.submit("not_retried"))  # max_retries=3, retry_on=(ConnectionError,)
    assert rec["status"] == "failed"
    assert rec["attempts"] == 1
    assert rec["error"]["reason"] == "error"
    assert "ValueError: not worth retrying" in rec["error"]["message"]


def test_max_retries_per_submission_overrides_the_kind(pool: PoolHandle) -> None:
    fewer = pool.submit("flaky", "fewer.log", 3, max_retries=1)  # kind says 5
    more = pool.submit("raise_value_error", "again", max_retries=2)  # kind says 0
    none = pool.submit("poison_segfault", max_retries=0)  # kind says 2
    rec = pool.wait(fewer)
    assert (rec["status"], rec["attempts"], rec["max_retries"]) == ("failed", 2, 1)
    assert len(pool.env.trace("fewer.log")) == 2
    rec = pool.wait(more)
    assert (rec["status"], rec["attempts"], rec["max_retries"]) == ("failed", 3, 2)
    assert "ValueError: again" in rec["error"]["message"]
    rec = pool.wait(none)
    assert (rec["status"], rec["attempts"], rec["error"]["reason"]) == ("failed", 1, "crash")
    assert len(pool.env.trace("poison.log")) == 1


def test_timeout_counts_as_an_attempt(pool: PoolHandle) -> None:
    rec = pool.wait(pool.submit("soft_timeout", "soft.log", max_retries=1))
    assert rec["status"] == "failed"
    assert rec["error"]["reason"] == "timeout"
    assert rec["attempts"] == 2
    assert pool.env.trace("soft.log") == ["cleaned up", "cleaned up"]


def test_the_most_retries_still_end_failed_and_more_are_refused(
        make_pool: Callable[..., PoolHandle]) -> None:
    # max_retries has default_max_retries' bounds, 0..100, in every path. (The
    # back-off's 2**(attempt-1) once stopped converting to a float at attempt
    # 1025, leaving a task "running" forever: the policy test below still
    # covers that attempt, which no task can now reach.)
    pool = make_pool(retry_backoff_s=0.0, log_level="warning")
    with pytest.raises(PoolError, match="max_retries must be an integer from 0 to 100"):
        pool.submit("raise_value_error", "again", max_retries=1100)
    rec = pool.wait(pool.submit("raise_value_error", "again", max_retries=100), 60)
    assert (rec["status"], rec["attempts"]) == ("failed", 101)
    assert "Exception in callback" not in pool.output()


# -- the policy alone (pure logic) ------------------------------------------------


def test_equal_jitter_waits_never_shrink_until_the_cap() -> None:
    policy = RetryPolicy(backoff_s=0.2, backoff_max_s=60.0)
    rng = random.Random(4)
    for attempt in range(1, 9):  # 0.2 * 2**8 > 60: capped from attempt 9 on
        longest = max(policy.delay_s(attempt, rng) for _ in range(200))
        shortest_next = min(policy.delay_s(attempt + 1, rng) for _ in range(200))
        assert 0.1 * 2 ** (attempt - 1) <= longest <= 0.2 * 2 ** (attempt - 1)
        assert shortest_next >= longest
    assert all(30.0 <= policy.delay_s(n, rng) <= 60.0 for n in (10, 64, 1025, 10**9))


def test_should_retry_allows_max_retries_after_the_first_attempt() -> None:
    assert [should_retry(n, 2, True) for n in (1, 2, 3)] == [True, True, False]
    assert not should_retry(1, 5, retryable=False)
    assert not should_retry(1, 0, True)


def test_retry_on_holds_for_a_task_reached_by_ref(pool: PoolHandle) -> None:
    """A ``@task`` whose module is not in task_modules (a BackgroundTasks call)
    keeps its retry_on."""
    assert "unlisted_picky" not in pool.call("kinds")["kinds"]
    rec = pool.wait(pool.submit("unlisted_picky", ref="tests.executor.unlisted_tasks:picky",
                                max_retries=3))
    assert (rec["status"], rec["attempts"]) == ("failed", 1), rec
    assert "ValueError: not worth retrying" in rec["error"]["message"]
