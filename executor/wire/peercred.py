"""Who is at the other end of a Unix socket (``SO_PEERCRED``, Linux).

Both ends of the pool socket ask: the pool refuses a client run by another
user, and a client refuses a "pool" run by another user (one who managed to
put their own socket where ours should be). The kernel records the peer's
credentials at ``connect``/``listen`` time, so asking once per connection is
enough.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_uid(sock: Any) -> int:
    """The uid of the process that made the other end of the connected Unix
    socket ``sock`` (a ``socket.socket``, or the socket-like object an asyncio
    or uvloop transport hands out). Raises ``OSError`` if it cannot be read."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    _, uid, _ = _UCRED.unpack(creds)
    return int(uid)
