"""The template and executor processes: where task code is imported and run.

The template (``python -m executor.worker.template``) imports the task
modules once, with no event loop and no thread, and forks executors; each
executor runs the tasks the pool writes to its pipe (``aio``, ``runner``). Imports
``executor.wire`` and nothing else of ``executor`` (never the store, the
pool or the client): a task's process holds only what it needs.

- ``template``: the template process's main loop (not re-exported: run it with ``-m``).
- ``aio``: an executor's loop (made after fork): take tasks while there is room,
  start them, report their ends, leave.
- ``asynccalls``: the ``async def`` calls on that loop, each in its own ``asyncio`` task:
  soft limit, ``CANCEL``, the tasks it left running.
- ``runner``: one task: resolve it, run a ``def`` task under its soft time limit, classify
  its end; ``run_call``, one attempt of a task to its end (run in-process by
  ``executor.testing``).
- ``frames``: taking one task frame at a time from the pipe, under ``flock`` (prefetch
  with take-back).
- ``limits``: ``Limits``; an executor's set-up after fork and when it recycles itself.
- ``context``: ``progress()`` for task code, and the task's own frames to the pool.
- ``doneframe``: the ``DONE`` frame, kept within the frame limit whatever the result.
"""

from executor.worker.aio import run_executor
from executor.worker.context import progress
from executor.worker.limits import Limits
from executor.worker.runner import close_thread_loop, run_call

__all__ = ["Limits", "close_thread_loop", "progress", "run_call", "run_executor"]
