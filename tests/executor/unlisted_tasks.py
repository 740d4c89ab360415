"""A ``@task`` module that no test pool lists in ``task_modules``: its functions
reach executors by ``ref`` only, as a ``BackgroundTasks`` call's do."""

from __future__ import annotations

from executor import task
from tests.support.tasks import async_wait


@task(name="unlisted_picky", max_retries=3, retry_on=(ConnectionError,))
def picky() -> None:
    """ValueError is not in retry_on: no retry, even reached by ref."""
    raise ValueError("not worth retrying")


async def wait_and_count(seconds: float) -> dict[str, int]:
    """No ``@task``, ``async def``: as ``add_task`` sends it, by ref. Returns the
    executor's pid and the most calls it saw running at once (what the
    registered ``async_wait`` does, called as a plain function)."""
    return await async_wait(seconds)
