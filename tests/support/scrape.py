"""Reading a real server's /metrics in tests: one scrape as plain values."""

from __future__ import annotations

from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

from tests.support.procs import ServerHandle

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(server: ServerHandle) -> Samples:
    """``{sample name: {sorted labels: value}}`` from one /metrics scrape."""
    status, text, _ = server.http("GET", "/metrics")
    assert status == 200
    out: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name][tuple(sorted(s.labels.items()))] = s.value
    return out


def value(m: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels`` (0.0 if absent)."""
    return m.get(name, {}).get(tuple(sorted(labels.items())), 0.0)
