"""What an HTTP worker needs for metrics: a sample buffer and the pool-down text.

HTTP workers keep no Prometheus metrics. Each records its requests in one
``HttpObservations``, drains it about once a second (and before exit) into an
``observe_http`` request to the pool, and answers ``/metrics`` with the pool's
``metrics`` reply, or ``pool_down_exposition()`` when the pool is unreachable.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from metrics.definitions import POOL_UP_HELP, POOL_UP_NAME

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Keeps one observe_http frame well under the 8 MiB frame limit (~40 bytes a sample)
# and bounds memory if the shipper stalls.
DEFAULT_MAX_SAMPLES = 50_000


class HttpObservations:
    """Request samples buffered in one HTTP worker until shipped to the pool.

    Not thread-safe; use it from the worker's event loop. Once ``max_samples``
    are buffered, further samples are dropped and counted in ``dropped``.
    """

    __slots__ = ("_max_samples", "_samples", "dropped")

    def __init__(self, max_samples: int = DEFAULT_MAX_SAMPLES) -> None:
        self._max_samples = max_samples
        self._samples: list[tuple[str, str, int, float]] = []
        self.dropped = 0

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Buffer one request; ``route`` is the route template, e.g. ``/tasks/{id}``."""
        samples = self._samples
        if len(samples) < self._max_samples:
            samples.append((method, route, status, seconds))
        else:
            self.dropped += 1

    def drain(self) -> list[list[object]]:
        """Return every buffered sample as ``[method, route, status, seconds]`` and clear."""
        samples, self._samples = self._samples, []
        return [list(s) for s in samples]

    def __len__(self) -> int:
        return len(self._samples)


class _PoolDown:
    """A collector serving ``offload_pool_up 0`` (no metric values, so no global state)."""

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(POOL_UP_NAME, POOL_UP_HELP, value=0)


def pool_down_exposition() -> bytes:
    """The ``/metrics`` body an HTTP worker serves when the pool is unreachable."""
    registry = CollectorRegistry()
    registry.register(_PoolDown())
    return generate_latest(registry)
