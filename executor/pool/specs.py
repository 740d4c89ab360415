"""The pool's check of each submitted task spec (the ``submit`` op's ``tasks``).

Every field must be one the store can hold (type, range, length; see
``PRIORITY_MIN`` and the bounds after it): a turn's submissions are stored
in one transaction, which one bad spec would fail for everyone. And the
call must bind to the registered kind's parameters (``executor.wire.callcheck``,
from the template's manifest): a call that cannot bind would fail on every
attempt. A refusal is ``Invalid``, naming the field as ``tasks[i].<field>``.
"""

from __future__ import annotations

import math
from typing import Any

from config.settings import MAX_RETRIES, MAX_TIMEOUT_S, MIN_TIMEOUT_S
from executor.pool.port import SpecSource
from executor.store import NewTask
from executor.wire.callcheck import CallChecks
from executor.wire.registry import unknown_kind_message

_SPEC_KEYS = frozenset({"kind", "payload", "max_retries", "timeout_s", "priority", "not_before",
                        "idempotency_key", "group_id", "seq", "ref", "concurrency"})

# What a spec may hold. The store refuses or cannot bind anything else, and
# a turn's submissions are stored in one transaction that one bad spec fails.
PRIORITY_MIN, PRIORITY_MAX = -1000, 1000
"""The priorities a task may have, also in the HTTP API (``server.validate``)."""
# MIN_TIMEOUT_S, MAX_TIMEOUT_S and MAX_RETRIES bound the settings' defaults
# too (config.settings): a submission may not go where a setting cannot.
INT64_MAX = 2**63 - 1
"""The largest integer the store holds (``seq``); msgpack carries up to 2**64-1."""
MAX_KEY_CHARS = 256
"""The longest ``group_id`` and ``idempotency_key``: the HTTP API's keys
(``server.validate.MAX_KEY_CHARS``, 200) plus the ``#<i>`` a batch's
``Idempotency-Key`` header numbers them with; ``BackgroundTasks`` makes ones
of 32 and about 45 characters."""
MAX_NAME_CHARS = 1000
"""The longest ``kind`` and ``ref``. A ``BackgroundTasks`` function's kind
and ref are its module path and qualname, of any length ``add_task``
accepts: this is far beyond a real one, and only keeps huge names out."""


class Invalid(Exception):
    """A request argument is wrong; ``field`` names it."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


class Specs:
    """Turns raw specs into ``NewTask``s for ``pool`` (its manifest and settings)."""

    def __init__(self, pool: SpecSource) -> None:
        self.pool = pool
        self._checks = CallChecks()

    def task(self, i: int, raw: Any, now: float) -> NewTask:
        """The task of spec ``tasks[i]``; raises ``Invalid`` naming the field
        (``unknown_kind`` for an unregistered kind without ``ref``) unless
        the store can hold every field and the call binds (see the module
        docstring)."""
        # Hot path (every submitted task): no strings built unless refused.
        if not isinstance(raw, dict):
            raise _bad(i, "", "must be a map")
        if not raw.keys() <= _SPEC_KEYS:
            raise _bad(i, "", f"has unknown field(s): {sorted(set(raw) - _SPEC_KEYS)}")
        get = raw.get
        kind, payload, ref = get("kind"), get("payload", b""), get("ref")
        if not isinstance(kind, str) or not 0 < len(kind) <= MAX_NAME_CHARS:
            raise _bad(i, ".kind", f"must be a string of 1 to {MAX_NAME_CHARS} characters")
        if ref is not None and not (isinstance(ref, str) and 0 < len(ref) <= MAX_NAME_CHARS):
            raise _bad(i, ".ref", f"must be a string module:qualname of 1 to {MAX_NAME_CHARS} "
                                  "characters")
        manifest = self.pool.manifest
        opts = manifest.get(kind)
        if opts is None:
            if ref is None:
                raise Invalid("unknown_kind", unknown_kind_message(kind, manifest),
                              f"tasks[{i}].kind")
            opts = {}
            concurrency = get("concurrency")
            if concurrency is not None:  # an async def function, sent by add_task
                if isinstance(concurrency, bool) or not isinstance(concurrency, int) \
                        or not 0 <= concurrency <= INT64_MAX:
                    raise _bad(i, ".concurrency", "must be an integer >= 0 (0: the "
                                                  "async_concurrency setting)")
                self.pool.learn_concurrency(kind, concurrency)
        if not isinstance(payload, bytes):
            raise _bad(i, ".payload", "must be bytes")
        if ref is None:  # BackgroundTasks calls (ref) were checked by add_task
            self._check_call(i, kind, opts, payload, manifest)
        max_retries = get("max_retries")
        if max_retries is None:
            max_retries = opts.get("max_retries")
            if max_retries is None:
                max_retries = self.pool.settings.default_max_retries
        timeout_s = get("timeout_s")
        if timeout_s is None:
            timeout_s = opts.get("timeout_s")
            if timeout_s is None:
                timeout_s = self.pool.settings.default_timeout_s
        if type(max_retries) is not int or not 0 <= max_retries <= MAX_RETRIES:
            raise _bad(i, ".max_retries", f"must be an integer from 0 to {MAX_RETRIES}")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) \
                or not MIN_TIMEOUT_S <= timeout_s <= MAX_TIMEOUT_S:  # also refuses nan
            raise _bad(i, ".timeout_s", f"must be a number from {MIN_TIMEOUT_S:g} to "
                                        f"{MAX_TIMEOUT_S:g}")
        priority = get("priority") or 0
        if type(priority) is not int or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
            raise _bad(i, ".priority", f"must be an integer from {PRIORITY_MIN} to "
                                       f"{PRIORITY_MAX}")
        not_before = get("not_before") or 0.0
        if isinstance(not_before, bool) or not isinstance(not_before, (int, float)) \
                or not math.isfinite(not_before) or not_before < 0:
            # Refused here: the store cannot hold NaN, and a failed enqueue
            # fails every submission committed in the same loop turn.
            raise _bad(i, ".not_before", "must be a time in seconds since the epoch")
        seq = get("seq") or 0
        if type(seq) is not int or not 0 <= seq <= INT64_MAX:
            raise _bad(i, ".seq", f"must be an integer from 0 to {INT64_MAX}")
        group_id, key = get("group_id"), get("idempotency_key")
        if group_id is not None and not (isinstance(group_id, str)
                                         and 0 < len(group_id) <= MAX_KEY_CHARS):
            raise _bad(i, ".group_id", f"must be a string of 1 to {MAX_KEY_CHARS} characters")
        if key is not None and not (isinstance(key, str) and 0 < len(key) <= MAX_KEY_CHARS):
            raise _bad(i, ".idempotency_key", f"must be a string of 1 to {MAX_KEY_CHARS} "
                                              "characters")
        return NewTask(kind, payload, max_retries, float(timeout_s), priority,
                       float(not_before), group_id, seq, key, ref)

    def _check_call(self, i: int, kind: str, opts: dict[str, Any], payload: bytes,
                    manifest: dict[str, dict[str, Any]]) -> None:
        """Raise ``Invalid`` (field ``tasks[i].args``, ``.kwargs`` or ``.payload``)
        if the call in ``payload`` does not bind to ``kind``'s parameters."""
        problem = self._checks.problem(kind, opts, payload, manifest)
        if problem is not None:
            field, message = problem
            raise Invalid("invalid", message if field != "payload" else
                          f"tasks[{i}].payload {message}", f"tasks[{i}].{field}")


def _bad(i: int, field: str, what: str) -> Invalid:
    where = f"tasks[{i}]{field}"
    return Invalid("invalid", f"{where} {what}", where)
