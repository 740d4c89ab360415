"""Who is charged when an executor dies (executor.pool.charges.decide)."""

from __future__ import annotations

from executor.pool.charges import Charge, decide, error
from executor.pool.slots import Inflight


def task(i: str, **kw: object) -> Inflight:
    inf = Inflight(i, "k", 1, 2, 5.0, 0.0, 0.0, started_at=1.0)
    for name, value in kw.items():
        setattr(inf, name, value)
    return inf


def charges(running: list[Inflight], reason: str | None, quarantine: set[str] = frozenset()
            ) -> dict[str, Charge]:
    return {inf.id: c for inf, c in decide(running, reason, quarantine)}


def test_a_lone_task_that_crashed_its_executor_is_charged() -> None:
    assert charges([task("a")], None) == {"a": Charge.CRASH}


def test_a_crash_with_several_running_charges_none_and_quarantines_each() -> None:
    assert charges([task("a"), task("b")], None) == {"a": Charge.QUARANTINE,
                                                       "b": Charge.QUARANTINE}


def test_a_quarantined_task_that_crashes_again_is_the_culprit() -> None:
    # It ran alone since; were it beside others, it is the one already known.
    assert charges([task("a"), task("b")], None, {"a"}) == {"a": Charge.CRASH,
                                                              "b": Charge.QUARANTINE}


def test_the_hard_time_limit_charges_only_the_late_task() -> None:
    assert charges([task("a", late=True), task("b")], "timeout") == {"a": Charge.TIMEOUT,
                                                                       "b": Charge.RELEASE}


def test_a_forced_cancel_charges_no_neighbour_and_leaves_its_task_recorded() -> None:
    got = charges([task("a", cancelled_by="api"), task("b")], "cancelled")
    assert got == {"a": Charge.RECORDED, "b": Charge.RELEASE}


def test_a_pool_shutdown_charges_nobody() -> None:
    assert charges([task("a"), task("b", late=True)], "shutdown") == {"a": Charge.RELEASE,
                                                                        "b": Charge.RELEASE}


def test_error_records_name_the_reason_and_the_executor() -> None:
    crash = error(Charge.CRASH, task("a"), "SIGSEGV", 42, 2.0)
    assert crash["reason"] == "crash" and "SIGSEGV" in crash["message"] and "42" in crash["message"]
    late = error(Charge.TIMEOUT, task("a"), "SIGKILL", 42, 2.0)
    assert late["reason"] == "timeout" and "7 s" in late["message"]
