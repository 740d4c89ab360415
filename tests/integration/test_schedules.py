"""Periodic tasks under the real server, on the real clock: the example's
``@task(every_s=5)`` heartbeat and an offload.toml cron schedule, as ``make
run`` serves them; ``GET /schedules`` and the schedule metrics; a schedule
of an unknown kind stops the pool at start."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.support.procs import PYTHON, Env, Proc, ServerHandle, running, wait_for

NIGHTLY = """
[schedules.nightly_report]
kind = "build_report"
cron = "0 3 * * *"
tz = "Europe/Paris"
kwargs = { pages = 5, seconds_per_page = 0.01 }
"""


def test_the_example_heartbeat_runs_and_get_schedules_shows_it(tmp_path: Path) -> None:
    env = Env(tmp_path, task_modules=["examples.tasks"])
    with open(env.config_path, "a") as f:
        f.write(NIGHTLY)
    log = tmp_path / "heartbeat.log"
    env.extra_env = {"OFFLOAD_EXAMPLE_HEARTBEAT_LOG": str(log),
                     "OFFLOAD_EXAMPLE_OUTBOX": str(tmp_path / "outbox")}
    with running(lambda: ServerHandle(env)) as server:
        started = time.time()
        wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 2, 30,
                 what="two heartbeats")

        def heartbeat() -> dict:
            rows = {r["name"]: r for r in server.http("GET", "/schedules")[1]["schedules"]}
            row = rows["heartbeat"]
            return rows if row["last_run"] and row["last_run"]["status"] == "succeeded" else {}
        rows = wait_for(heartbeat, 30, what="GET /schedules to show a finished heartbeat")
        status, metrics, _ = server.http("GET", "/metrics")
    assert status == 200
    beat, nightly = rows["heartbeat"], rows["nightly_report"]
    assert (beat["kind"], beat["spec"], beat["source"], beat["catch_up"], beat["overlap"]) == (
        "heartbeat", "every 5 s", "@task", "latest", "allow")
    assert beat["last_slot"] % 5 == 0 and beat["last_slot"] >= started - 5
    assert beat["next_slot"] % 5 == 0 and beat["next_slot"] > beat["last_slot"]
    assert beat["last_run"]["slot"] % 5 == 0 and beat["last_run"]["task_id"]
    # scheduled_for: the slot each run covers, whole multiples of 5 s
    for line in log.read_text().splitlines():
        assert re.fullmatch(r"slot \d\d:\d\d:[0-5][05] UTC ran \d+\.\d{3} s after it", line)
    assert (nightly["kind"], nightly["spec"], nightly["last_slot"], nightly["last_run"]) == (
        "build_report", "0 3 * * * (Europe/Paris)", None, None)
    next_run = datetime.fromtimestamp(nightly["next_slot"], ZoneInfo("Europe/Paris"))
    assert (next_run.hour, next_run.minute, next_run.second) == (3, 0, 0)
    assert re.search(r'offload_schedule_runs_total\{schedule="heartbeat"\} [1-9]', metrics)
    assert re.search(r'offload_schedule_lag_seconds_count\{schedule="heartbeat"\} [1-9]', metrics)


def test_a_schedule_of_an_unknown_kind_stops_the_pool_at_start(tmp_path: Path) -> None:
    env = Env(tmp_path)
    with open(env.config_path, "a") as f:
        f.write('\n[schedules.nightly]\nkind = "build_reprot"\ncron = "0 3 * * *"\n')
    pool = Proc([PYTHON, "-m", "executor", "--config", str(env.config_path)], env, "pool")
    try:
        assert pool.popen.wait(60) == 2
    finally:
        pool.stop()
    assert (f"{env.config_path}: schedule 'nightly': unknown task kind 'build_reprot'"
            in pool.output())
