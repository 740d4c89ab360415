"""What every offload process agrees on: frames, arguments, task kinds, errors.

Runs in all of them: the HTTP workers and users' apps (``client``), the pool
(``pool``), the template and executors (``worker``). It imports nothing from
``executor`` outside itself (only ``config``-free standard modules and
msgpack), so any process may import it cheaply.

- ``protocol``: the frame format on the pool's socket and the executors' pipes (the spec).
- ``codec``: task arguments and results as msgpack, and the types accepted.
- ``registry``: ``@task``, kinds and their options, importing task code.
- ``callcheck``: does a call bind to a task's parameters, without running it.
- ``errors``: the exceptions users see, and the ones that cross a pipe.
- ``peercred``: the uid of the process at the other end of a Unix socket.
"""

from executor.wire.codec import ACCEPTED, decode_call, encode_call
from executor.wire.errors import (
    OffloadError,
    PoolError,
    PoolUnavailable,
    Retry,
    TaskTimeout,
    UnknownKind,
)
from executor.wire.protocol import FrameReader, FrameType, ProtocolError, encode
from executor.wire.registry import Registry, TaskDef, TaskOptions, task, task_def

__all__ = [
    "ACCEPTED",
    "FrameReader",
    "FrameType",
    "OffloadError",
    "PoolError",
    "PoolUnavailable",
    "ProtocolError",
    "Registry",
    "Retry",
    "TaskDef",
    "TaskOptions",
    "TaskTimeout",
    "UnknownKind",
    "decode_call",
    "encode",
    "encode_call",
    "task",
    "task_def",
]
