"""A template killed under load: registered kinds stay registered.

While the pool starts a new template (it imports the task modules again,
0.1-0.3 s), submissions of registered kinds must be stored and run once the
new executors are up, never refused as ``unknown_kind``: a client takes that
refusal as final and drops the task.
"""

from __future__ import annotations

import os
import signal

from executor.wire.codec import encode_call
from executor.wire.errors import PoolError
from tests.support.procs import PoolHandle, template_pids, wait_for

NOOP = {"kind": "noop", "payload": encode_call([], {})}


def test_submits_during_a_template_restart_are_stored_not_refused(pool: PoolHandle) -> None:
    [template] = wait_for(lambda: template_pids(pool.popen.pid), 10, what="the template")
    os.kill(template, signal.SIGKILL)
    loaded = "task code loaded (generation 2)"
    ids: list[str] = []
    refused: list[str] = []
    # Submit without pause from the kill until the new template has loaded
    # (and a little after): some submissions land while none is loaded.
    while loaded not in pool.output() or len(ids) + len(refused) < 50:
        try:
            ids.append(pool.call("submit", {"tasks": [NOOP]})["tasks"][0]["id"])
        except PoolError as exc:
            refused.append(f"{exc.code}: {exc}")
    assert refused == [], refused[:3]
    assert "the template process died" in pool.output()  # the kill was seen, not missed
    for task_id in ids:
        assert pool.wait(task_id)["status"] == "succeeded"
