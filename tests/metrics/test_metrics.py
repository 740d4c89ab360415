"""Unit tests for metrics/: what the pool records is exactly what it renders."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY, values
from prometheus_client.parser import text_string_to_metric_families

from metrics import (
    CONTENT_TYPE,
    EXECUTOR_STATES,
    FAILURE_REASONS,
    OUTCOMES,
    RESTART_REASONS,
    SLOT_STATES,
    HttpObservations,
    PoolMetrics,
    pool_down_exposition,
)

Labels = frozenset[tuple[str, str]]


def samples(text: bytes) -> dict[str, dict[Labels, float]]:
    """Sample name -> {label set -> value}, from an exposition."""
    out: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


def lab(**labels: str) -> Labels:
    return frozenset(labels.items())


EXPECTED_NAMES = {
    "offload_tasks_submitted_total",
    "offload_tasks_finished_total",
    "offload_task_failures_total",
    "offload_task_retries_total",
    "offload_task_duration_seconds_bucket",
    "offload_task_duration_seconds_sum",
    "offload_task_duration_seconds_count",
    "offload_task_queue_seconds_bucket",
    "offload_task_queue_seconds_sum",
    "offload_task_queue_seconds_count",
    "offload_queue_depth",
    "offload_queue_oldest_due_seconds",
    "offload_executors",
    "offload_executor_slots",
    "offload_executor_restarts_total",
    "offload_http_requests_total",
    "offload_http_request_duration_seconds_bucket",
    "offload_http_request_duration_seconds_sum",
    "offload_http_request_duration_seconds_count",
    "offload_pool_up",
}


def busy_metrics() -> PoolMetrics:
    m = PoolMetrics()
    m.task_submitted("send_email", 3)
    m.task_submitted("report")
    m.task_failed_attempt("send_email", "crash")
    m.task_retried("send_email")
    m.task_failed_attempt("send_email", "timeout")
    m.task_finished("send_email", "failed")
    m.task_finished("send_email", "succeeded")
    m.task_finished("send_email", "succeeded")
    m.task_finished("report", "cancelled")
    m.observe_queue("send_email", 0.002)
    m.observe_run("send_email", 0.3)
    m.observe_run("send_email", 45.0)
    m.observe_run("report", 0.0005)
    m.set_queue_depth({"pending": 4, "retrying": 1})
    m.set_executors({"idle": 3, "busy": 1})
    m.executor_restarted("crash")
    m.executor_restarted("crash")
    m.executor_restarted("recycled")
    m.observe_http([["post", "/tasks", 202, 0.004]])
    return m


def test_exposed_names_are_exactly_the_declared_metrics() -> None:
    names = set(samples(busy_metrics().render()))
    assert {n for n in names if not n.endswith("_created")} == EXPECTED_NAMES
    assert not any(n.endswith("_total_total") for n in names)


def test_counters_show_exactly_what_was_recorded() -> None:
    s = samples(busy_metrics().render())
    assert s["offload_tasks_submitted_total"] == {lab(kind="send_email"): 3, lab(kind="report"): 1}
    assert s["offload_tasks_finished_total"] == {
        lab(kind="send_email", outcome="failed"): 1,
        lab(kind="send_email", outcome="succeeded"): 2,
        lab(kind="report", outcome="cancelled"): 1,
    }
    assert s["offload_task_failures_total"] == {
        lab(kind="send_email", reason="crash"): 1,
        lab(kind="send_email", reason="timeout"): 1,
    }
    assert s["offload_task_retries_total"] == {lab(kind="send_email"): 1}
    restarts = s["offload_executor_restarts_total"]
    expected = {"crash": 2, "recycled": 1}
    assert restarts == {lab(reason=r): expected.get(r, 0) for r in RESTART_REASONS}
    assert s["offload_pool_up"] == {lab(): 1}


def test_histograms_have_buckets_sum_and_count_per_kind() -> None:
    s = samples(busy_metrics().render())
    count = s["offload_task_duration_seconds_count"]
    assert count == {lab(kind="send_email"): 2, lab(kind="report"): 1}
    total = s["offload_task_duration_seconds_sum"]
    assert total[lab(kind="send_email")] == pytest.approx(45.3)
    buckets = s["offload_task_duration_seconds_bucket"]
    assert buckets[lab(kind="send_email", le="0.001")] == 0
    assert buckets[lab(kind="send_email", le="0.5")] == 1
    assert buckets[lab(kind="send_email", le="30.0")] == 1
    assert buckets[lab(kind="send_email", le="60.0")] == 2
    assert buckets[lab(kind="send_email", le="600.0")] == 2
    assert buckets[lab(kind="send_email", le="+Inf")] == 2
    assert buckets[lab(kind="report", le="0.001")] == 1
    assert s["offload_task_queue_seconds_count"] == {lab(kind="send_email"): 1}
    les = {dict(k)["le"] for k in s["offload_http_request_duration_seconds_bucket"]}
    assert {"0.0005", "10.0", "+Inf"} <= les


def test_instances_do_not_share_state_or_use_the_global_registry() -> None:
    a, b = PoolMetrics(), PoolMetrics()
    a.task_submitted("x", 5)
    assert samples(a.render())["offload_tasks_submitted_total"] == {lab(kind="x"): 5}
    assert "offload_tasks_submitted_total" not in samples(b.render())
    assert REGISTRY.get_sample_value("offload_tasks_submitted_total", {"kind": "x"}) is None


@pytest.mark.parametrize(
    ("call", "arg"),
    [
        ("task_finished", "exploded"),
        ("task_failed_attempt", "oops"),
        ("executor_restarted", "bored"),
    ],
)
def test_unknown_vocabulary_raises(call: str, arg: str) -> None:
    m = PoolMetrics()
    method = getattr(m, call)
    with pytest.raises(ValueError, match=repr(arg)):
        if call == "executor_restarted":
            method(arg)
        else:
            method("k", arg)


def test_unknown_executor_state_raises_and_changes_nothing() -> None:
    m = PoolMetrics()
    m.set_executors({"idle": 2})
    with pytest.raises(ValueError, match="'sleeping'"):
        m.set_executors({"busy": 1, "sleeping": 1})
    assert samples(m.render())["offload_executors"][lab(state="idle")] == 2


def test_vocabularies_match_the_design() -> None:
    assert OUTCOMES == ("succeeded", "failed", "cancelled")
    assert FAILURE_REASONS == ("error", "crash", "timeout", "memory", "lost")
    assert EXECUTOR_STATES == ("starting", "idle", "busy", "stopping")
    assert RESTART_REASONS == ("crash", "timeout", "memory", "recycled", "reload", "killed")
    assert SLOT_STATES == ("busy", "free")


def test_http_samples_from_two_workers_sum() -> None:
    m = PoolMetrics()
    w1, w2 = HttpObservations(), HttpObservations()
    for _ in range(3):
        w1.record("POST", "/tasks", 202, 0.002)
    w1.record("GET", "/tasks/{id}", 404, 0.001)
    w2.record("post", "/tasks", 202, 0.004)
    w2.record("GET", "/tasks/{id}", 200, 2.0)
    m.observe_http(w1.drain())
    m.observe_http(w2.drain())
    m.observe_http([])
    s = samples(m.render())
    assert s["offload_http_requests_total"] == {
        lab(method="POST", route="/tasks", status="202"): 4,
        lab(method="GET", route="/tasks/{id}", status="404"): 1,
        lab(method="GET", route="/tasks/{id}", status="200"): 1,
    }
    assert s["offload_http_request_duration_seconds_count"] == {
        lab(method="POST", route="/tasks"): 4,
        lab(method="GET", route="/tasks/{id}"): 2,
    }
    total = s["offload_http_request_duration_seconds_sum"][lab(method="POST", route="/tasks")]
    assert total == pytest.approx(0.010)


@pytest.mark.parametrize(
    "bad",
    [["GET", "/x", 200], ["GET", "/x", "200", 0.1], ["GET", 7, 200, 0.1],
     ["GET", "/x", 200, -1.0], ["GET", "/x", 200, float("nan")], ["GET", "/x", True, 0.1]],
)
def test_malformed_http_batch_is_rejected_whole(bad: list[object]) -> None:
    m = PoolMetrics()
    with pytest.raises(ValueError, match=r"samples\[1\]"):
        m.observe_http([["GET", "/ok", 200, 0.1], bad])
    assert "offload_http_requests_total" not in samples(m.render())


def test_gauges_set_and_reset() -> None:
    m = PoolMetrics()
    s = samples(m.render())
    assert s["offload_executors"] == {lab(state=st): 0 for st in EXECUTOR_STATES}
    m.set_executors({"starting": 2, "busy": 5})
    m.set_executors({"idle": 4, "busy": 3})
    m.set_queue_depth({"pending": 10, "retrying": 2})
    m.set_queue_depth({"pending": 7})
    s = samples(m.render())
    assert s["offload_executors"] == {
        lab(state="starting"): 0, lab(state="idle"): 4,
        lab(state="busy"): 3, lab(state="stopping"): 0,
    }
    assert s["offload_queue_depth"] == {lab(status="pending"): 7, lab(status="retrying"): 0}
    assert s["offload_queue_oldest_due_seconds"] == {lab(): 0}
    m.set_oldest_due(12.5)
    assert samples(m.render())["offload_queue_oldest_due_seconds"] == {lab(): 12.5}
    m.set_oldest_due(-0.001)  # a due time a clock tick ahead is no wait
    assert samples(m.render())["offload_queue_oldest_due_seconds"] == {lab(): 0}


def test_executor_slots_show_busy_and_free_places() -> None:
    m = PoolMetrics()
    assert samples(m.render())["offload_executor_slots"] == {lab(state="busy"): 0,
                                                             lab(state="free"): 0}
    m.set_executor_slots({"busy": 130, "free": 70})
    m.set_executor_slots({"busy": 3})
    assert samples(m.render())["offload_executor_slots"] == {lab(state="busy"): 3,
                                                             lab(state="free"): 0}
    with pytest.raises(ValueError, match="'idle'"):
        m.set_executor_slots({"idle": 1})


def test_every_metric_is_in_the_readme_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for metric in PoolMetrics().registry.collect():
        name = metric.name + "_total" * (metric.type == "counter")
        assert f"| `{name}` | {metric.type} |" in readme, f"{name} is not in the README table"


def test_refuses_prometheus_multiprocess_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
        PoolMetrics()


def test_observations_drain_returns_and_clears() -> None:
    obs = HttpObservations()
    assert len(obs) == 0
    assert obs.drain() == []
    obs.record("GET", "/healthz", 200, 0.0001)
    obs.record("POST", "/tasks", 202, 0.003)
    assert len(obs) == 2
    assert obs.drain() == [["GET", "/healthz", 200, 0.0001], ["POST", "/tasks", 202, 0.003]]
    assert len(obs) == 0
    assert obs.drain() == []
    obs.record("GET", "/metrics", 200, 0.002)
    assert obs.drain() == [["GET", "/metrics", 200, 0.002]]


def test_observations_are_bounded() -> None:
    obs = HttpObservations(max_samples=2)
    for _ in range(5):
        obs.record("GET", "/x", 200, 0.001)
    assert len(obs) == 2
    assert obs.dropped == 3
    assert len(obs.drain()) == 2
    obs.record("GET", "/x", 200, 0.001)
    assert len(obs) == 1


def test_pool_down_exposition() -> None:
    text = pool_down_exposition()
    assert samples(text) == {"offload_pool_up": {lab(): 0}}
    assert b"# TYPE offload_pool_up gauge" in text
    assert CONTENT_TYPE.startswith("text/plain")


def test_worker_restarts_leave_no_trace_in_the_exposition() -> None:
    """HTTP workers hand their observations to the pool, which keeps one set of
    series whatever the number of workers that ever lived: 500 workers (as
    after hundreds of restarts) produce the same series as one, and the sums
    are exact. With multiprocess files this is where scrapes slow down."""
    one, many = PoolMetrics(), PoolMetrics()
    sample = ["POST", "/tasks", 202, 0.003]
    one.observe_http([sample] * 500)
    for _ in range(500):
        buffer = HttpObservations()  # a new worker process each time
        buffer.record(*sample)  # type: ignore[arg-type]
        many.observe_http(buffer.drain())
    assert len(many.render().splitlines()) == len(one.render().splitlines())
    total = samples(many.render())["offload_http_requests_total"]
    assert total[lab(method="POST", route="/tasks", status="202")] == 500
