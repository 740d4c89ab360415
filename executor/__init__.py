"""offload's executor side: task registration, the pool and its executors.

Public names for task code: ``task``, ``BackgroundTasks``, ``BackgroundTask``,
``drain_background``, ``progress``, ``Retry``, ``TaskTimeout``. The rest is
machinery, laid out by the process it runs in (each subpackage's
``__init__`` is its map); imports flow one way, ``wire`` <- ``store`` <-
``pool`` / ``worker`` / ``client``:

- ``wire/``: what every process agrees on (frames, argument codec, ``@task``, errors).
- ``store/``: the store contract and its backends; opened by the pool only.
- ``pool/``: the pool process (and its keeper): loop, group commit, executors, retries.
- ``worker/``: the template and executor processes that import and run task code.
- ``client/``: the hand-off inside HTTP workers and apps (``BackgroundTasks``, outbox).
- ``testing/``: test modes for the tests of apps that use offload
  (``executor.testing.inline()``, ``fake()``, pytest fixtures); imported on its
  own, above ``pool``, ``worker`` and ``client``, whose parts it runs in-process.
- ``__main__``: ``python -m executor``, the pool on its own.
"""

from executor.client.background import BackgroundTask, BackgroundTasks
from executor.client.shared import drain_background
from executor.wire import (
    OffloadError,
    PoolError,
    PoolUnavailable,
    Registry,
    Retry,
    TaskTimeout,
    UnknownKind,
    task,
)
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
