"""A store write that fails mid-turn (disk full, I/O error), with a real pool:
nothing of that turn happens, and nothing is lost or stuck."""

from __future__ import annotations

import itertools
import threading

from executor.wire.codec import encode_call
from executor.wire.errors import PoolError
from tests.support.procs import PYTHON, Env, Proc, call, wait_for


def test_a_turn_the_store_refuses_runs_nothing_of_it_and_loses_no_outcome(env: Env) -> None:
    env.write_config(executors=2)
    pool = Proc([PYTHON, "-m", "tests.executor.faulty_pool", "--config", str(env.config_path)],
                env, "pool")
    try:
        wait_for(lambda: call(env.socket_path, "health", timeout_s=1)["executors_up"] >= 1, 60,
                 what="the pool to be ready")
        accepted: dict[str, str] = {}  # label -> task id
        refused: list[str] = []
        labels = (f"t{n}" for n in itertools.count())
        lock = threading.Lock()

        def submit_until_the_fault() -> None:
            # Several clients at once, so that new tasks and outcomes of earlier
            # ones meet in one turn, which the fault needs.
            while "FAULT" not in pool.output():
                with lock:
                    label = next(labels)
                    if len(accepted) + len(refused) > 20_000:
                        return
                spec = {"kind": "record", "payload": encode_call(["faults", label], {})}
                try:
                    task_id = call(env.socket_path, "submit", {"tasks": [spec]})[
                        "tasks"][0]["id"]
                except PoolError as exc:
                    assert exc.code == "store_unavailable", exc
                    with lock:
                        refused.append(label)
                else:
                    with lock:
                        accepted[label] = task_id

        clients = [threading.Thread(target=submit_until_the_fault) for _ in range(4)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(120)
        assert "FAULT" in pool.output()
        for label in ("after1", "after2"):  # the pool goes on
            spec = {"kind": "record", "payload": encode_call(["faults", label], {})}
            accepted[label] = call(env.socket_path, "submit", {"tasks": [spec]})["tasks"][0]["id"]

        def settled() -> dict[str, int] | None:
            counts = call(env.socket_path, "stats")["counts"]
            return counts if counts["running"] == counts["pending"] == 0 else None

        counts = wait_for(settled, 30, what="every stored task to finish")
        # Every accepted task ran once and is recorded; a refused one never ran.
        assert counts["succeeded"] == len(accepted) and sum(counts.values()) == len(accepted)
        ran = env.trace("faults")
        assert sorted(ran) == sorted(accepted)
        assert not set(refused) & set(ran)
        assert "the store refused this turn's writes" in pool.output()
        # Counted as submitted: what was stored, not what a rolled-back turn tried.
        text = call(env.socket_path, "metrics")["text"]
        submitted = [line for line in text.splitlines()
                     if line.startswith('offload_tasks_submitted_total{kind="record"}')]
        assert submitted == [f'offload_tasks_submitted_total{{kind="record"}} '
                             f'{float(len(accepted))}']
    finally:
        pool.stop()
