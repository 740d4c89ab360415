"""The hand-off: code that runs inside HTTP workers and users' apps to reach the pool.

Runs in gunicorn's HTTP workers (and in any process that hands work to a
pool on this host). Imports ``config``, ``executor.wire`` and nothing else
of ``executor``: it never opens the store or starts an executor.

- ``background``: ``BackgroundTasks`` / ``BackgroundTask``, checked at ``add_task``.
- ``calls``: that check (``prepare``): can an executor make this call, and its encoding.
- ``outbox``: calls waiting to be stored, sent in batches, retried while the pool restarts.
- ``client``: ``PoolClient``, one pipelined connection to the pool's socket.
- ``shared``: the per-process client and outbox, forgotten at fork; ``drain_background``.
- ``divert``: where hand-offs go while a test mode of ``executor.testing`` is on
  (``None`` otherwise: one check per hand-off).
"""

from executor.client.background import BackgroundTask, BackgroundTasks
from executor.client.client import PoolClient
from executor.client.outbox import Outbox
from executor.client.shared import drain_background

__all__ = ["BackgroundTask", "BackgroundTasks", "Outbox", "PoolClient", "drain_background"]
