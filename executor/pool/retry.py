"""Retry policy: whether a failed attempt is retried, and after how long.

Back-off is exponential with *equal* jitter and a cap: attempt n waits
``d/2 + uniform(0, d/2)`` with ``d = min(cap, base * 2**(n-1))``. Equal jitter
(rather than full jitter, ``uniform(0, d)``) keeps retries of many tasks
spread out while guaranteeing each wait is at least as long as the one
before: full jitter can retry a poison task almost at once, again and again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Back-off parameters for one kind (settings' defaults, overridden by ``@task``)."""

    backoff_s: float
    backoff_max_s: float

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        # The exponent stops at 64: 2**1024 no longer converts to a float, and
        # max_retries is the submitter's choice (a poison task must still fail).
        d = min(self.backoff_max_s, self.backoff_s * 2.0 ** min(max(0, attempt - 1), 64))
        r = (rng or random).random()
        return d / 2 + r * d / 2


def should_retry(attempts: int, max_retries: int, retryable: bool) -> bool:
    """A task that has run ``attempts`` times may run again if ``retryable``
    and it has retries left (``max_retries`` retries after the first attempt)."""
    return retryable and attempts < max_retries + 1


RESPAWN_FIRST_S = 0.2
RESPAWN_MAX_S = 5.0
RESPAWN_HEALTHY_S = 10.0


def respawn_delay_s(previous_s: float, lived_s: float) -> float:
    """How long to wait before starting again a supervised process that lived
    ``lived_s`` and was last restarted after ``previous_s``: at once-ish
    (``RESPAWN_FIRST_S``) after a healthy run, doubling up to ``RESPAWN_MAX_S``
    while it keeps dying young (task code that does not import, a bad
    config), so a crash loop does not spin. The keeper (for the pool) and
    the master's watchdog (for the keeper) share it."""
    return RESPAWN_FIRST_S if lived_s > RESPAWN_HEALTHY_S else min(previous_s * 2,
                                                                    RESPAWN_MAX_S)
