"""offload's metrics: declared once, owned by the pool process.

The pool builds a ``PoolMetrics`` in its ``main`` and records every task,
executor and HTTP observation on it. HTTP workers buffer request samples in an
``HttpObservations``, ship them to the pool (``observe_http``), and serve the
pool's ``render()`` text on ``/metrics`` with ``CONTENT_TYPE``, or
``pool_down_exposition()`` when the pool is unreachable. prometheus_client's
global registry and multiprocess mode are not used.
"""

from metrics.definitions import (
    EXECUTOR_STATES,
    FAILURE_REASONS,
    OUTCOMES,
    RESTART_REASONS,
    SLOT_STATES,
    PoolMetrics,
)
from metrics.http import CONTENT_TYPE, HttpObservations, pool_down_exposition

__all__ = [
    "CONTENT_TYPE",
    "EXECUTOR_STATES",
    "FAILURE_REASONS",
    "OUTCOMES",
    "RESTART_REASONS",
    "SLOT_STATES",
    "HttpObservations",
    "PoolMetrics",
    "pool_down_exposition",
]
