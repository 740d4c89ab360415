"""PoolClient against a socket that never answers: the narrow seam for timeouts."""

from __future__ import annotations

import asyncio
from pathlib import Path

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
