"""Values both backends write into their task columns the same way: the
ids of new tasks and JSON text.

Ids are ``f"{ms:012x}{random:016x}"``: sortable by creation time,
unguessable, 28 characters.
"""

from __future__ import annotations

import json
import os
from typing import Any


def new_ids(now: float, n: int) -> list[str]:
    """``n`` fresh task ids for tasks created at ``now`` (one system call)."""
    prefix = f"{int(now * 1000):012x}"
    suffixes = os.urandom(8 * n).hex()
    return [prefix + suffixes[16 * i:16 * i + 16] for i in range(n)]


def to_json(value: dict[str, Any] | None) -> str | None:
    """``value`` as compact JSON text for a TEXT or jsonb column (``None`` stays NULL)."""
    return None if value is None else json.dumps(value, separators=(",", ":"))
