"""Periodic tasks under the real server, on the real clock: the example's
``@task(every_s=5)`` heartbeat and an offload.toml cron schedule, as ``make
run`` serves them; ``GET /schedules`` and the schedule metrics; a schedule
of an unknown kind stops the pool at start."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from server import AsyncClient, Client, schemas
from tests.support.procs import PYTHON, Env, Proc, ServerHandle, running, wait_for

OFFLOAD = str(Path(sys.executable).with_name("offload"))
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
            body = server.http("GET", "/schedules")[1]
            msgspec.convert(body, schemas.Schedules)  # as the OpenAPI document says
            rows = {r["name"]: r for r in body["schedules"]}
            row = rows["heartbeat"]
            return rows if row["last_run"] and row["last_run"]["status"] == "succeeded" else {}
        rows = wait_for(heartbeat, 30, what="GET /schedules to show a finished heartbeat")
        status, metrics, _ = server.http("GET", "/metrics")
        environ = {**env.environ(), "OFFLOAD_URL": env.url}
        cli_json = subprocess.run([OFFLOAD, "schedules", "-o", "json"], env=environ,
                                  capture_output=True, text=True, timeout=60, check=True)
        cli_table = subprocess.run([OFFLOAD, "schedules"], env=environ, capture_output=True,
                                   text=True, timeout=60, check=True).stdout
        with Client(env.url) as client:
            from_client = client.schedules()
        from_async = asyncio.run(_async_schedules(env.url))
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
    assert [r["name"] for r in from_client] == [r["name"] for r in from_async] == [
        "heartbeat", "nightly_report"]
    # offload schedules: the same rows, as JSON or as a table
    assert [r["name"] for r in json.loads(cli_json.stdout)["schedules"]] == [
        "heartbeat", "nightly_report"]
    assert "0 3 * * * (Europe/Paris)" in cli_table and "every 5 s" in cli_table


async def _async_schedules(url: str) -> list[dict[str, Any]]:
    async with AsyncClient(url) as client:
        return await client.schedules()


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
