"""offload's executor side: task registration, the pool and its executors.

Public names for task code: ``task``, ``BackgroundTasks``, ``BackgroundTask``,
``drain_background``, ``progress``, ``Retry``, ``TaskTimeout``. The rest is the pool's machinery.
"""

from executor.client.background import BackgroundTask, BackgroundTasks
from executor.client.shared import drain_background
from executor.wire.errors import (
    OffloadError,
    PoolError,
    PoolUnavailable,
    Retry,
    TaskTimeout,
    UnknownKind,
)
from executor.wire.registry import Registry, task
from executor.worker.context import progress

__all__ = [
    "BackgroundTask",
    "BackgroundTasks",
    "OffloadError",
    "PoolError",
    "PoolUnavailable",
    "Registry",
    "Retry",
    "TaskTimeout",
    "UnknownKind",
    "drain_background",
    "progress",
    "task",
]
