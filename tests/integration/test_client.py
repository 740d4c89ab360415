"""``server.Client`` and ``server.AsyncClient`` against real gunicorn with a bearer token."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator

import pytest

from server import (
    AsyncClient,
    Client,
    ClientError,
    Conflict,
    InvalidRequest,
    NotFound,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from tests.support.procs import Env, ServerHandle, free_port, running, wait_for

TOKEN = "s3cret-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    env = Env(tmp_path_factory.mktemp("client"), auth_token=TOKEN)
    with running(lambda: ServerHandle(env, ready=False)) as handle:
        # /readyz is behind the token too
        wait_for(lambda: handle.http("GET", "/readyz", headers=AUTH)[0] == 200, 90,
                 what="gunicorn /readyz")
        yield handle


@pytest.fixture
def client(server: ServerHandle) -> Iterator[Client]:
    with Client(server.env.url, token=TOKEN) as c:
        yield c


def test_submit_wait_and_get(client: Client) -> None:
    task_id = client.submit("echo", 1, "two", three=3.0, kind="a task argument named kind")
    done = client.wait(task_id, timeout_s=30)
    assert done["status"] == "succeeded"
    assert done["result"] == {"args": [1, "two"],
                              "kwargs": {"three": 3.0, "kind": "a task argument named kind"}}
    assert client.get(task_id) == done


def test_submit_with_options_and_idempotency_key(client: Client) -> None:
    t0 = time.time()
    first = client.submit_with("echo", ["x"], {"y": 1}, delay_s=30, priority=5,
                               max_retries=1, timeout_s=9, idempotency_key="order-17")
    again = client.submit_with("echo", ["x"], {"y": 1}, delay_s=30,
                               idempotency_key="order-17")
    assert again == first
    rec = client.get(first)
    assert (rec["status"], rec["priority"], rec["max_retries"], rec["timeout_s"]) == (
        "pending", 5, 1, 9.0)
    assert rec["not_before"] >= t0 + 30
    cancelled = client.cancel(first)
    assert cancelled["status"] == "cancelled"
    with pytest.raises(Conflict) as info:
        client.cancel(first)
    assert info.value.status == 409 and info.value.code == "conflict"


def test_submit_many(client: Client) -> None:
    ids = client.submit_many([{"kind": "echo", "args": [i]} for i in range(3)])
    assert len(set(ids)) == 3
    assert [client.wait(i)["result"]["args"] for i in ids] == [[0], [1], [2]]
    with pytest.raises(InvalidRequest) as info:
        client.submit_many([{"kind": "echo"}, {"kind": "nope"}])
    assert (info.value.status, info.value.field) == (422, "tasks[1].kind")


def test_typed_errors(server: ServerHandle, client: Client) -> None:
    with pytest.raises(NotFound) as not_found:
        client.get("0" * 32)
    assert (not_found.value.status, not_found.value.code) == (404, "not_found")
    with pytest.raises(InvalidRequest) as unknown:
        client.submit("send_emial", "a@b.c")
    assert (unknown.value.status, unknown.value.code, unknown.value.field) == (
        422, "unknown_kind", "kind")
    assert "send_emial" in str(unknown.value)
    with pytest.raises(InvalidRequest) as bad:
        client.submit_with("echo", priority=5000)
    assert bad.value.field == "priority"
    with Client(server.env.url, token="wrong") as intruder, \
            pytest.raises(Unauthorized) as unauthorized:
        intruder.get("0" * 32)
    assert (unauthorized.value.status, unauthorized.value.code) == (401, "unauthorized")
    with Client(server.env.url) as anonymous, pytest.raises(Unauthorized):
        anonymous.submit("echo")
    assert all(issubclass(e, ClientError) for e in (NotFound, InvalidRequest, Unauthorized))


def test_arguments_that_are_not_json_are_refused_before_sending(client: Client) -> None:
    with pytest.raises(TypeError, match="argument 'when'"):
        client.submit("echo", when=dt.datetime.now())
    with pytest.raises(TypeError, match=r"tasks\[1\]: argument args\[0\]"):
        client.submit_many([{"kind": "echo"}, {"kind": "echo", "args": [{1, 2}]}])


def test_wait_times_out_with_a_typed_timeout(client: Client) -> None:
    task_id = client.submit("sleep", 3)
    with pytest.raises(WaitTimeout) as info:
        client.wait(task_id, timeout_s=0.5)
    assert isinstance(info.value, TimeoutError)
    assert info.value.record is not None and info.value.record["status"] in ("pending",
                                                                             "running")
    assert client.wait(task_id, timeout_s=30)["status"] == "succeeded"
    # With no time to wait, it still asks once: a finished task is no timeout.
    assert client.wait(task_id, timeout_s=0)["status"] == "succeeded"


def test_unreachable_server_is_unavailable() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", timeout_s=2) as nowhere, \
            pytest.raises(Unavailable) as info:
        nowhere.get("x")
    assert info.value.status is None and info.value.code == "unreachable"


def test_async_client(server: ServerHandle) -> None:
    async def go() -> None:
        async with AsyncClient(server.env.url, token=TOKEN) as client:
            ids = await asyncio.gather(*(client.submit("echo", i) for i in range(5)))
            done = await asyncio.gather(*(client.wait(i, timeout_s=30) for i in ids))
            assert [d["result"]["args"] for d in done] == [[i] for i in range(5)]
            assert (await client.get(ids[0]))["status"] == "succeeded"
            later = await client.submit_with("echo", delay_s=60)
            assert (await client.cancel(later))["status"] == "cancelled"
            assert len(await client.submit_many([{"kind": "noop"}] * 2)) == 2
            with pytest.raises(NotFound):
                await client.get("missing")
            with pytest.raises(Conflict):
                await client.cancel(later)
            with pytest.raises(InvalidRequest) as info:
                await client.submit("nope")
            assert info.value.code == "unknown_kind"
            slow = await client.submit("sleep", 2)
            with pytest.raises(WaitTimeout):
                await client.wait(slow, timeout_s=0.3)
        async with AsyncClient(server.env.url, token="wrong") as intruder:
            with pytest.raises(Unauthorized):
                await intruder.submit("echo")

    asyncio.run(go())

