"""``server.Client`` and ``AsyncClient`` inside ``executor.testing``'s modes: no
server, requests answered in the process with the server's validation, the
pool's spec check and records, tasks run (``inline``) or recorded (``fake``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from config.settings import Settings
from executor.client import divert
from executor.testing import fake, inline
from server import AsyncClient, Client, Conflict, InvalidRequest, NotFound, WaitTimeout
from tests.executor.testing import calls_for_tests as c

SETTINGS = Settings(task_modules=["tests.executor.testing.calls_for_tests"],
                    default_max_retries=0)
NOWHERE = "http://offload.invalid:1"  # never contacted: a request there would fail


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    c.reset()
    yield
    assert divert.handler is None


def test_inline_runs_a_task_submitted_by_kind() -> None:
    with inline(settings=SETTINGS) as offload, Client(NOWHERE) as client:
        task_id = client.submit("greet", "ada", punctuation="?")
        record = client.get(task_id)
        assert client.wait(task_id, timeout_s=1) == record
    assert c.SEEN == [("greet", "ada")]
    assert (record["id"], record["kind"], record["status"], record["result"],
            record["attempts"]) == (task_id, "greet", "succeeded", "hello ada?", 1)
    assert [(call.kind, call.args, call.kwargs, call.fn) for call in offload.calls] == [
        ("greet", ["ada"], {"punctuation": "?"}, c.greet)]


def test_refusals_are_the_servers() -> None:
    with inline(settings=SETTINGS) as offload, Client(NOWHERE) as client:
        with pytest.raises(InvalidRequest) as unknown:
            client.submit("gret", "ada")
        with pytest.raises(InvalidRequest) as misfit:
            client.submit("greet", "ada", "!", "extra")
        with pytest.raises(InvalidRequest) as bad_option:
            client.submit_with("greet", ["ada"], priority=5000)
        with pytest.raises(InvalidRequest) as in_batch:
            client.submit_many([{"kind": "greet", "args": ["a"]}, {"kind": "nope"}])
        with pytest.raises(NotFound):
            client.get("no-such-task")
        with pytest.raises(TypeError, match="cannot be sent as JSON"):
            client.submit("greet", object())
    assert (unknown.value.status, unknown.value.code, unknown.value.field) == (
        422, "unknown_kind", "kind")
    assert "did you mean: greet" in unknown.value.message
    assert (misfit.value.code, misfit.value.field) == ("invalid", "args")
    assert "too many positional arguments" in misfit.value.message
    assert bad_option.value.field == "priority"
    assert in_batch.value.field == "tasks[1].kind"
    assert offload.calls == [] and c.SEEN == []  # nothing taken, batch all or nothing


def test_inline_raises_a_failed_task_at_submit_unless_collected() -> None:
    kind = "explode"
    with inline(settings=SETTINGS), Client(NOWHERE) as client, \
            pytest.raises(ValueError, match="x fails on purpose"):
        client.submit(kind, "x")
    with inline(settings=SETTINGS, raise_failures=False), Client(NOWHERE) as client:
        record = client.get(client.submit(kind, "y"))
    assert record["status"] == "failed"
    assert record["error"]["reason"] == "error"
    assert "ValueError: y fails on purpose" in record["error"]["message"]


def test_fake_records_runs_cancels_and_keeps_idempotency() -> None:
    with fake(settings=SETTINGS) as offload, Client(NOWHERE) as client:
        first = client.submit_with("greet", ["ada"], idempotency_key="signup-1")
        again = client.submit_with("greet", ["ada"], idempotency_key="signup-1")
        other = client.submit("greet", "bob")
        assert first == again and len(offload.calls) == 2
        assert client.get(first)["status"] == "pending"
        with pytest.raises(WaitTimeout):
            client.wait(first, timeout_s=0.05)
        assert client.cancel(other)["status"] == "cancelled"
        offload.run_all()
        assert client.get(first)["status"] == "succeeded"
        with pytest.raises(Conflict):
            client.cancel(first)
        ids = client.submit_many([{"kind": "greet", "args": ["c"]},
                                  {"kind": "greet", "args": ["d"]}])
        assert ids == [call.id for call in offload.calls[2:]]
    assert c.SEEN == [("greet", "ada")]  # bob was cancelled; c and d not run


def test_async_client_is_answered_too() -> None:
    async def submit() -> dict[str, object]:
        async with AsyncClient(NOWHERE) as client:
            return await client.get(await client.submit("greet", "eve"))

    with inline(settings=SETTINGS):
        record = asyncio.run(submit())
    assert (record["status"], record["result"]) == ("succeeded", "hello eve!")
