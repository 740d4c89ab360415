"""Fixtures for the HTTP layer's unit tests: a short run dir, a fake pool, an app."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from config.settings import Settings
from server import create_app
from server.http import ASGIApp
from tests.server.fakepool import FakePool


@pytest.fixture
def pool(run_dir: str) -> Iterator[FakePool]:
    fake = FakePool(os.path.join(run_dir, "pool.sock")).start()
    yield fake
    fake.stop()


def settings_for(run_dir: str, **overrides: Any) -> Settings:
    return Settings(run_dir=run_dir, **overrides)


@pytest.fixture
def app(run_dir: str, pool: FakePool) -> ASGIApp:
    return create_app(settings_for(run_dir))


@contextlib.asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[list[dict[str, Any]]]:
    """Drive the app's lifespan like a server; yields the messages it sent."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []
    got = asyncio.Event()

    async def send(message: Any) -> None:
        sent.append(dict(message))
        got.set()

    async def until(n: int) -> None:
        while len(sent) < n:
            got.clear()
            await asyncio.wait_for(got.wait(), 5)

    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"},
                                      "state": {}}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    await until(1)
    try:
        yield sent
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        if not task.done():
            await until(2)
        await asyncio.wait_for(task, 5)


Body = Callable[[httpx.AsyncClient], Awaitable[Any]]


def run(app: ASGIApp, body: Body, **client_kw: Any) -> Any:
    """Run ``body(client)`` in a fresh loop, inside the app's lifespan."""
    async def main() -> Any:
        async with lifespan(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://offload.test",
                **client_kw) as client:
            return await body(client)
    return asyncio.run(main())


def call(app: ASGIApp, method: str, url: str, **kw: Any) -> httpx.Response:
    """One request, in its own loop and lifespan."""
    async def body(client: httpx.AsyncClient) -> httpx.Response:
        return await client.request(method, url, **kw)
    result: httpx.Response = run(app, body)
    return result


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of an error answer, checking its shape."""
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "field"}
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = body["error"]
    return error
