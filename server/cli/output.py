"""How ``offload`` prints: JSON (``--output json``) or tables, on stdout; every
message for a person (progress, prompts, errors) on stderr."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any


class Printer:
    """Prints results in one format; ``json_mode`` writes exactly one JSON
    document per result (one per line for a stream, e.g. ``status --watch``)."""

    def __init__(self, fmt: str) -> None:
        self.json_mode = fmt == "json"

    def result(self, data: Any, table: str | None = None) -> None:
        """``data`` as JSON, or ``table`` (a text rendering of it) for a person."""
        if self.json_mode:
            sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
        elif table is not None:
            sys.stdout.write(table if table.endswith("\n") else table + "\n")
        sys.stdout.flush()


def say(message: str) -> None:
    """A message for a person, on stderr."""
    print(message, file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns; ``None`` shows as ``-``."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """``name: value`` lines."""
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k + ':':<{width + 1}} {_cell(v)}" for k, v in pairs)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def when(epoch: float | None) -> str | None:
    """An epoch time as local ``YYYY-mm-dd HH:MM:SS``."""
    if not epoch:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
