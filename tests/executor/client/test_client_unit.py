"""PoolClient against a socket that never answers: the narrow seam for timeouts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from executor.client.client import PoolClient
from executor.wire.errors import PoolUnavailable


def test_a_call_the_pool_never_answers_times_out_and_is_forgotten(tmp_path: Path) -> None:
    path = str(tmp_path / "silent.sock")

    async def main() -> None:
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await reader.read(65536):
                pass

        server = await asyncio.start_unix_server(swallow, path)
        client = PoolClient(path)
        try:
            with pytest.raises(PoolUnavailable, match=r"did not answer 'stats' in 0\.2 s"):
                await client.call("stats", {}, timeout_s=0.2)
            conn = client._conn
            assert conn is not None and conn.waiters == {}  # no reply is awaited any more
            # the connection stays usable: a later call times out on its own timer
            with pytest.raises(PoolUnavailable):
                await client.call("stats", {}, timeout_s=0.05)
            assert client._conn is conn
        finally:
            await client.close()
            server.close()

    asyncio.run(main())


def _silent_pool(path: str) -> asyncio.Future[asyncio.Server]:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass

    return asyncio.ensure_future(asyncio.start_unix_server(swallow, path))


@pytest.mark.parametrize("args", [
    {"tasks": [{"kind": "\ud800"}]},        # JSON's "\ud800": a lone surrogate
    {"tasks": [{"idempotency_key": "k\udfff"}]},
    {"n": 2**64},                           # past msgpack's integers
])
def test_a_request_that_cannot_be_encoded_raises_and_leaves_no_waiter(
        tmp_path: Path, args: dict[str, object]) -> None:
    path = str(tmp_path / "silent.sock")

    async def main() -> None:
        server = await _silent_pool(path)
        client = PoolClient(path)
        try:
            with pytest.raises(PoolUnavailable):  # opens the connection
                await client.call("stats", {}, timeout_s=0.05)
            conn = client._conn
            assert conn is not None and conn.waiters == {}
            with pytest.raises((ValueError, TypeError, OverflowError)):
                await client.call("submit", args, timeout_s=5)
            assert conn.waiters == {} and conn.out == []  # nothing waits, nothing is sent
            assert client._conn is conn and not conn.closed
        finally:
            await client.close()
            server.close()

    asyncio.run(main())


def test_a_cancelled_call_is_forgotten(tmp_path: Path) -> None:
    path = str(tmp_path / "silent.sock")

    async def main() -> None:
        server = await _silent_pool(path)
        client = PoolClient(path)
        try:
            call = asyncio.ensure_future(client.call("get", {"id": "x", "wait_s": 60}))
            conn = await _connected(client)
            await _until(lambda: bool(conn.waiters))
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert conn.waiters == {}
        finally:
            await client.close()
            server.close()

    asyncio.run(main())


async def _connected(client: PoolClient) -> Any:
    await _until(lambda: client._conn is not None)
    return client._conn


async def _until(predicate: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)
