"""The template and executor processes: where task code is imported and run.

The template (``python -m executor.worker.template``) imports the task
modules once, with no event loop and no thread, and forks executors; each
executor runs the tasks the pool writes to its pipe (``runner``). Imports
``executor.wire`` and nothing else of ``executor`` (never the store, the
pool or the client): a task's process holds only what it needs.

- ``template``: the template process's main loop (not re-exported: run it with ``-m``).
- ``runner``: an executor's loop: read a task, run it under its limits, report;
  ``run_call``, one attempt of a task (also run in-process by ``executor.testing``).
- ``context``: ``progress()`` for task code, and the task's own frames to the pool.
- ``doneframe``: the ``DONE`` frame, kept within the frame limit whatever the result.
"""

from executor.worker.context import progress
from executor.worker.runner import Limits, close_thread_loop, run_call, run_executor

__all__ = ["Limits", "close_thread_loop", "progress", "run_call", "run_executor"]
