"""An HTTP worker whose master is gone: offload's app counts the requests that
may hand off background calls, and refuses every request once its gate is
closed (``server.lifeline``)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from server import create_app
from server.app import OffloadApp
from server.http import ASGIApp
from server.lifeline import RequestGate
from tests.server.conftest import call, run, settings_for
from tests.server.fakepool import FakePool


def gated(app: ASGIApp) -> RequestGate:
    assert isinstance(app, OffloadApp)
    app.gate = RequestGate()
    return app.gate


def test_a_closed_gate_answers_503_restarting_with_retry_after(app: ASGIApp,
                                                               pool: FakePool) -> None:
    gate = gated(app)
    assert call(app, "POST", "/tasks", json={"kind": "report"}).status_code == 202
    gate.closed = True
    for method, path in (("POST", "/tasks"), ("GET", "/tasks"), ("GET", "/elsewhere")):
        r = call(app, method, path, json={"kind": "report"} if method == "POST" else None)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "restarting"
    assert [op for op, _ in pool.calls].count("submit") == 1  # nothing more reached the pool


def test_user_routes_and_writes_are_counted_and_a_long_poll_is_not(run_dir: str,
                                                                   pool: FakePool) -> None:
    seen: list[int] = []

    async def user_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return  # no lifespan support
        seen.append(gate.in_flight)  # a route of the user's, which may add BackgroundTasks
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = create_app(settings_for(run_dir), app=user_app)
    gate = gated(app)
    task_id = pool.add()["id"]  # pending: a long poll on it waits its whole time

    async def body(client: httpx.AsyncClient) -> None:
        assert (await client.post("/signup")).status_code == 200
        assert (await client.post("/tasks", json={"kind": "report"})).status_code == 202
        poll = asyncio.ensure_future(client.get(f"/tasks/{task_id}?wait=2"))
        while "get" not in pool.ops():  # the long poll is in flight, in the pool
            await asyncio.sleep(0.01)
        assert not poll.done()
        await asyncio.wait_for(gate.idle(), 1)  # the long poll holds nothing up
        assert gate.in_flight == 0
        await poll

    run(app, body)
    assert seen == [1]


def test_idle_returns_once_the_last_counted_request_leaves() -> None:
    gate = RequestGate()

    async def main() -> list[str]:
        events: list[str] = []
        gate.enter()
        gate.enter()
        waiter = asyncio.ensure_future(gate.idle())
        await asyncio.sleep(0)
        gate.leave()
        await asyncio.sleep(0)
        events.append(f"one left, idle={waiter.done()}")
        gate.leave()
        await asyncio.wait_for(waiter, 5)
        events.append("idle")
        await asyncio.wait_for(gate.idle(), 5)  # already idle: returns at once
        return events

    assert asyncio.run(main()) == ["one left, idle=False", "idle"]
