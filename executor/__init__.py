"""offload's executor side: task registration, the pool and its executors.

Public names for task code: ``task``, ``BackgroundTasks``, ``BackgroundTask``,
``drain_background``, ``progress``, ``Retry``, ``TaskTimeout``. The rest is the pool's machinery.
"""

from executor.background import BackgroundTask, BackgroundTasks
from executor.context import progress
from executor.errors import (
    OffloadError,
    PoolError,
    PoolUnavailable,
    Retry,
    TaskTimeout,
    UnknownKind,
)
from executor.registry import Registry, task
from executor.shared import drain_background

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
