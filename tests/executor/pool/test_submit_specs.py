"""The pool's check of each submitted spec (``Requests._spec``) and how a turn's
submissions are stored (``Requests.store_submits``).

The pool stores every submission of a loop turn in one transaction, so a
spec the store cannot hold must be refused before it gets there, naming its
field; and should the combined write still fail, only the submission that
fails on its own is refused. Unit tests on a stand-in pool, then the same
over a real pool's socket.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest

from executor.client.background import BackgroundTasks
from executor.pool.requests import Requests
from executor.pool.specs import Invalid
from executor.store import NewTask
from executor.store.records import BatchLost, StoreError
from executor.wire.codec import encode_call
from executor.wire.protocol import FrameReader, FrameType, encode
from tests.executor.helpers import pool_error
from tests.support.procs import PoolHandle

INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1  # the largest integer msgpack carries


def job(x: int) -> int:
    return x


def _requests() -> Requests:
    manifest = {"echo": {"max_retries": 3, "timeout_s": 30.0, "params": None}}
    pool = SimpleNamespace(manifest=manifest, settings=SimpleNamespace(
        default_max_retries=3, default_timeout_s=300.0))
    return Requests(pool)  # type: ignore[arg-type]


def _good(**fields: Any) -> dict[str, Any]:
    return {"kind": "echo", "payload": encode_call([1], {}), **fields}


# Each (field, value) is refused; every one of them used to reach the store,
# where it failed the whole turn's transaction (or, for the first, overflowed).
BAD_FIELDS: list[tuple[str, Any]] = [
    ("priority", UINT64_MAX), ("priority", INT64_MAX + 1), ("priority", -(2**63)),
    ("priority", 1001), ("priority", -1001), ("priority", "high"), ("priority", 1.5),
    ("seq", UINT64_MAX), ("seq", INT64_MAX + 1),
    ("max_retries", UINT64_MAX), ("timeout_s", 1e308), ("timeout_s", 604_801.0),
    # The bounds of the settings they override (default_max_retries,
    # default_timeout_s): 1e-9 s made every such task an executor restart.
    ("max_retries", 101), ("timeout_s", 1e-9), ("timeout_s", 0.0009), ("timeout_s", 0),
    ("group_id", ["g"]), ("group_id", {"g": 1}), ("group_id", 7), ("group_id", b"g"),
    ("group_id", ""), ("group_id", "g" * 257),
    ("idempotency_key", ["k"]), ("idempotency_key", {"k": 1}), ("idempotency_key", 7),
    ("idempotency_key", ""), ("idempotency_key", "k" * 257),
    ("ref", ["m:f"]), ("ref", {"m": "f"}), ("ref", 7), ("ref", ""), ("ref", "m:" + "f" * 999),
    ("kind", "k" * 1001),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_a_spec_field_the_store_cannot_hold_is_refused_naming_it(field: str,
                                                                  value: Any) -> None:
    with pytest.raises(Invalid) as info:
        _requests().specs.task(3, _good(**{field: value}), 0.0)
    assert (info.value.code, info.value.field) == ("invalid", f"tasks[3].{field}")
    assert info.value.message.startswith(f"tasks[3].{field} must be")


@pytest.mark.parametrize("fields", [
    {"priority": 1000}, {"priority": -1000}, {"priority": 0}, {"priority": None},
    {"seq": INT64_MAX}, {"max_retries": 100}, {"max_retries": 0},
    {"timeout_s": 0.001}, {"timeout_s": 604_800.0},
    {"group_id": "g", "idempotency_key": "k" * 200, "ref": "m:f"},
    {"group_id": "g" * 200, "idempotency_key": "k", "ref": None},
    # a function's module path and qualname have no length limit of their own
    {"kind": "k" * 1000, "ref": "m" * 500 + ":" + "f" * 499},
])
def test_the_edges_of_each_range_are_accepted(fields: dict[str, Any]) -> None:
    task = _requests().specs.task(0, _good(**fields), 0.0)
    assert task.kind == fields.get("kind", "echo")


def test_what_background_tasks_sends_is_accepted() -> None:
    tasks = BackgroundTasks()
    tasks.add_task(job, 1)
    tasks.add_task(job, 2)
    for seq, call in tasks._pending:
        spec = tasks._spec(seq, call)
        task = _requests().specs.task(seq, spec, 0.0)
        assert (task.group_id, task.seq, task.idempotency_key, task.ref) == (
            spec["group_id"], seq, spec["idempotency_key"], f"{__name__}:job")


# -- store_submits on a stand-in pool --------------------------------------------


class _Conn:
    """Stands in for ``ClientConn``: keeps what it was answered."""

    def __init__(self) -> None:
        self.replies: dict[int, Any] = {}
        self.errors: dict[int, tuple[str, str]] = {}

    def reply(self, req_id: int, result: Any) -> None:
        self.replies[req_id] = result

    def fail(self, req_id: int, code: str, message: str, field: str | None = None) -> None:
        self.errors[req_id] = (code, message)


class _Pool:
    """``Pool.enqueue`` whose store refuses, as a whole, any call with a task of
    a kind in ``broken`` (leaving no trace, as a store's savepoint does)."""

    def __init__(self, broken: set[str]) -> None:
        self.broken = broken
        self.calls: list[list[str]] = []
        self.stored: list[str] = []

    def enqueue(self, tasks: list[NewTask]) -> list[SimpleNamespace]:
        self.calls.append([t.kind for t in tasks])
        bad = self.broken.intersection(t.kind for t in tasks)
        if bad:
            raise OverflowError(f"{sorted(bad)}: Python int too large to convert to SQLite")
        records = [SimpleNamespace(id=f"id-{len(self.stored) + n}") for n in range(len(tasks))]
        self.stored += [r.id for r in records]
        return records


def _submits(conn: _Conn, *kinds: str) -> list[tuple[Any, int, list[NewTask], bool]]:
    return [(conn, req_id, [NewTask(kind, b"", 0, 1.0)] * 2, True)
            for req_id, kind in enumerate(kinds, 1)]


def _store(pool: _Pool, batch: list[tuple[Any, int, list[NewTask], bool]]) -> Any:
    req = Requests(pool)  # type: ignore[arg-type]
    return req.store_submits(batch)


def test_one_submission_the_store_refuses_does_not_fail_the_others_of_its_turn() -> None:
    conn, pool = _Conn(), _Pool({"bad"})
    acknowledge = _store(pool, _submits(conn, "a", "bad", "c"))
    assert pool.calls == [["a", "a", "bad", "bad", "c", "c"],  # the turn, then each alone
                          ["a", "a"], ["bad", "bad"], ["c", "c"]]
    code, message = conn.errors.pop(2)  # answered at once: nothing of its is stored
    assert code == "internal" and "the store refused the tasks" in message
    assert conn.errors == {} and conn.replies == {}  # the others: once on disk
    acknowledge(None)
    assert conn.replies == {1: {"ids": ["id-0", "id-1"]}, 3: {"ids": ["id-2", "id-3"]}}
    assert pool.stored == ["id-0", "id-1", "id-2", "id-3"]


def test_a_turn_the_store_refuses_entirely_fails_every_submitter() -> None:
    conn, pool = _Conn(), _Pool({"a", "b"})
    assert _store(pool, _submits(conn, "a", "b")) is None
    assert sorted(conn.errors) == [1, 2] and conn.replies == {}
    assert {code for code, _ in conn.errors.values()} == {"internal"}


def test_a_single_submission_is_not_tried_twice() -> None:
    conn, pool = _Conn(), _Pool({"bad"})
    assert _store(pool, _submits(conn, "bad")) is None
    assert pool.calls == [["bad", "bad"]] and list(conn.errors) == [1]


def test_a_turn_the_store_takes_is_one_call_answered_once_on_disk() -> None:
    conn, pool = _Conn(), _Pool(set())
    acknowledge = _store(pool, _submits(conn, "a", "b"))
    assert pool.calls == [["a", "a", "b", "b"]] and conn.replies == {}
    acknowledge(OSError("fsync failed"))
    assert conn.replies == {} and {c for c, _ in conn.errors.values()} == {"store_unavailable"}


# -- over a real pool's socket ---------------------------------------------------


def _exchange(path: str, requests: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Send every request in one write on one connection (so the pool reads
    them in one loop turn) and return the replies by request id."""
    data = b"".join(encode(FrameType.REQUEST, r) for r in requests)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(data)
        reader, got = FrameReader(), {}
        while len(got) < len(requests):
            chunk = s.recv(65536)
            assert chunk, f"the pool closed the connection; replies so far: {got}"
            for _, body in reader.feed(chunk):
                got[body["id"]] = body
    return got


def _spec(n: int, **fields: Any) -> dict[str, Any]:
    return {"kind": "echo", "payload": msgpack.packb([[n], {}]), **fields}


def test_each_bad_field_is_refused_by_the_pool_naming_it(pool: PoolHandle) -> None:
    for field, value in BAD_FIELDS:
        err = pool_error(pool, "submit", {"tasks": [_spec(0), _spec(1, **{field: value})]})
        assert (err.code, err.field) == ("invalid", f"tasks[1].{field}"), (field, value)
    # All or nothing per request: not even the good spec before the bad one was
    # stored, in any status (it could have run and finished by now).
    counts = pool.call("stats")["counts"]
    assert sum(counts.values()) == 0, counts
    assert pool.wait(pool.submit("echo", 1))["status"] == "succeeded"


def test_a_bad_submission_does_not_fail_the_good_ones_of_the_same_turn(
        pool: PoolHandle) -> None:
    got = _exchange(pool.env.socket_path, [
        {"id": 1, "op": "submit", "args": {"tasks": [_spec(1)], "reply": "ids"}},
        {"id": 2, "op": "submit", "args": {"tasks": [_spec(2, priority=UINT64_MAX)]}},
        {"id": 3, "op": "submit", "args": {"tasks": [_spec(3, group_id=["g"])]}},
        {"id": 4, "op": "submit", "args": {"tasks": [_spec(4), _spec(5)]}},
    ])
    assert got[2]["error"]["field"] == "tasks[0].priority"
    assert got[3]["error"]["field"] == "tasks[0].group_id"
    assert got[1]["ok"] and got[4]["ok"], got
    ids = got[1]["result"]["ids"] + [t["id"] for t in got[4]["result"]["tasks"]]
    assert [pool.wait(i)["status"] for i in ids] == ["succeeded"] * 3


class _LostPool(_Pool):
    """``Pool.enqueue`` whose store lost the turn's whole transaction."""

    def enqueue(self, tasks: list[NewTask]) -> list[SimpleNamespace]:
        self.calls.append([t.kind for t in tasks])
        raise BatchLost("database or disk is full; the batch's transaction was rolled back")


def test_a_lost_turn_is_not_retried_per_submission_nor_answered_internal() -> None:
    # Turn.flush rolls the turn back and answers every submitter
    # store_unavailable (503, Retry-After); a per-submission retry could only fail.
    conn, pool = _Conn(), _LostPool(set())
    with pytest.raises(BatchLost):
        _store(pool, _submits(conn, "a", "b"))
    assert pool.calls == [["a", "a", "b", "b"]] and conn.errors == {}



def test_a_store_failure_while_serving_is_answered_without_its_detail() -> None:
    # The store's error names its file: the pool logs it, and answers
    # store_unavailable (503 over HTTP), not 'invalid' with the path in it.
    def get(task_id: str) -> None:
        raise StoreError("/srv/secret/offload.db: disk I/O error; nothing was changed")

    pool = SimpleNamespace(store=SimpleNamespace(get=get))
    conn = _Conn()
    Requests(pool).handle(conn, 7, "get", {"id": "t1"})  # type: ignore[arg-type]
    code, message = conn.errors[7]
    assert code == "store_unavailable" and "/srv" not in message and "offload.db" not in message
