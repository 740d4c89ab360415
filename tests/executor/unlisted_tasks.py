"""A ``@task`` module that no test pool lists in ``task_modules``: its functions
reach executors by ``ref`` only, as a ``BackgroundTasks`` call's do."""

from __future__ import annotations

from executor import task


@task(name="unlisted_picky", max_retries=3, retry_on=(ConnectionError,))
def picky() -> None:
    """ValueError is not in retry_on: no retry, even reached by ref."""
    raise ValueError("not worth retrying")
