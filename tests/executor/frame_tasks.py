"""Task kinds that try to write frames over ``max_frame_bytes``, for the frame
size tests (task module ``tests.executor.frame_tasks``, next to
``tests.support.tasks``)."""

from __future__ import annotations

import os

from executor import progress, task


@task(name="raise_huge", max_retries=0)
def raise_huge(n: int) -> None:
    """Raise an exception whose message is ``n`` characters long."""
    raise ValueError("m" * n)


@task(name="huge_progress", max_retries=0)
def huge_progress(n: int) -> int:
    """Report progress with an ``n``-character message; the executor's pid."""
    progress(0.5, "p" * n)
    return os.getpid()
