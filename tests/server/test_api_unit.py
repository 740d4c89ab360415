"""The HTTP API against a fake pool: routes, status codes, headers, error bodies."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from executor.wire.codec import decode_call
from server import create_app, mount, schemas
from server.http import ASGIApp
from tests.server.conftest import call, error_of, lifespan, run, settings_for
from tests.server.fakepool import FakePool

RECORD_KEYS = {"id", "kind", "status", "attempts", "max_retries", "timeout_s", "priority",
               "not_before", "created_at", "started_at", "finished_at", "progress", "error",
               "cancelled_by", "result"}


# -- POST /tasks ---------------------------------------------------------------

def test_submit_202_location_and_record(app: ASGIApp, pool: FakePool) -> None:
    before = time.time()
    r = call(app, "POST", "/tasks", json={
        "kind": "send_email", "args": ["a@b.c"], "kwargs": {"n": 2}, "max_retries": 5,
        "timeout_s": 2.5, "priority": 7, "delay_s": 30})
    assert r.status_code == 202
    body = r.json()
    assert set(body) == RECORD_KEYS
    assert r.headers["location"] == f"/tasks/{body['id']}"
    assert body["status"] == "pending" and body["kind"] == "send_email"
    assert (body["max_retries"], body["timeout_s"], body["priority"]) == (5, 2.5, 7)
    assert body["result"] is None
    (spec,) = dict(pool.calls)["submit"]["tasks"]
    assert decode_call(spec["payload"]) == (["a@b.c"], {"n": 2})
    assert before + 30 <= spec["not_before"] <= time.time() + 30
    assert "idempotency_key" not in spec


def test_submit_minimal_body_and_eta(app: ASGIApp, pool: FakePool) -> None:
    r = call(app, "POST", "/tasks", json={"kind": "report"})
    assert r.status_code == 202
    r = call(app, "POST", "/tasks", json={"kind": "report", "eta": 1893456000})
    assert r.status_code == 202
    first, second = (args["tasks"][0] for op, args in pool.calls if op == "submit")
    assert set(first) == {"kind", "payload"}
    assert decode_call(first["payload"]) == ([], {})
    assert second["not_before"] == 1893456000.0


def test_idempotency_key_header_is_forwarded_on_every_submit(app: ASGIApp,
                                                             pool: FakePool) -> None:
    async def body(c: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        headers = {"Idempotency-Key": "order-42"}
        one = await c.post("/tasks", json={"kind": "send_email"}, headers=headers)
        two = await c.post("/tasks", json={"kind": "send_email"}, headers=headers)
        return one, two
    one, two = run(app, body)
    assert one.status_code == two.status_code == 202
    assert [a["tasks"][0]["idempotency_key"] for op, a in pool.calls if op == "submit"] == [
        "order-42", "order-42"]


def test_a_batch_forwards_key_hash_index_idempotency_keys_on_every_retry(
        app: ASGIApp, pool: FakePool) -> None:
    """``Idempotency-Key: K`` on a batch becomes ``K#<i>`` for item i (an item's
    own key wins), the same on a retry: deduplicating is the pool's job."""
    batch = {"tasks": [{"kind": "send_email"}, {"kind": "report", "idempotency_key": "own"}]}

    async def body(c: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        headers = {"Idempotency-Key": "import-7"}
        one = await c.post("/tasks/batch", json=batch, headers=headers)
        two = await c.post("/tasks/batch", json=batch, headers=headers)
        return one, two
    one, two = run(app, body)
    assert one.status_code == two.status_code == 202
    keys = [[t.get("idempotency_key") for t in a["tasks"]] for op, a in pool.calls
            if op == "submit"]
    assert keys == [["import-7#0", "own"]] * 2  # an item's own key wins


@pytest.mark.parametrize("key", ["k" * 201, ""])
def test_idempotency_key_too_long_or_empty_is_422(app: ASGIApp, pool: FakePool, key: str) -> None:
    r = call(app, "POST", "/tasks", json={"kind": "send_email"},
             headers={"Idempotency-Key": key})
    assert r.status_code == 422
    assert error_of(r)["field"] == "Idempotency-Key"
    assert "submit" not in pool.ops()


def test_unknown_kind_passes_the_pools_message(app: ASGIApp, pool: FakePool) -> None:
    r = call(app, "POST", "/tasks", json={"kind": "send_emial"})
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "unknown_kind" and err["field"] == "kind"
    assert "registered kinds: report, send_email" in err["message"]


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "send_email", "colour": "red"}, "colour"),
    ({"args": []}, "kind"),
    ({"kind": "send_email", "args": {}}, "args"),
    ({"kind": "send_email", "kwargs": []}, "kwargs"),
    ({"kind": "send_email", "max_retries": 101}, "max_retries"),
    ({"kind": "send_email", "timeout_s": 0}, "timeout_s"),
    ({"kind": "send_email", "delay_s": -1}, "delay_s"),
    ({"kind": "send_email", "priority": 1001}, "priority"),
    ({"kind": "send_email", "args": [2**64]}, "args[0]"),
    ({"kind": "send_email", "args": json.loads("[" * 32 + "]" * 32)}, "args"),
])
def test_submit_422_names_the_field(app: ASGIApp, pool: FakePool, body: dict[str, Any],
                                    field: str) -> None:
    r = call(app, "POST", "/tasks", json=body)
    assert r.status_code == 422, r.text
    err = error_of(r)
    assert (err["code"], err["field"]) == ("invalid", field)
    assert "submit" not in pool.ops()


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"", b'{"kind": NaN}', b"\xff",
                                     b'{"kind": "add", "args": [1e400]}'])
def test_malformed_json_is_400(app: ASGIApp, pool: FakePool, content: bytes) -> None:
    r = call(app, "POST", "/tasks", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert error_of(r)["code"] == "malformed_json"


def test_very_deep_json_is_refused_not_crashed(app: ASGIApp, pool: FakePool) -> None:
    deep = b'{"kind": "x", "args": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = call(app, "POST", "/tasks", content=deep)
    assert r.status_code in (400, 422)
    error_of(r)


def test_wrong_content_type_is_415(app: ASGIApp, pool: FakePool) -> None:
    r = call(app, "POST", "/tasks", content=b"kind=x",
             headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    assert error_of(r)["field"] == "Content-Type"
    ok = call(app, "POST", "/tasks", content=b'{"kind": "report"}',
              headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 202


def test_body_over_limit_is_413_by_content_length(run_dir: str, pool: FakePool) -> None:
    app = create_app(settings_for(run_dir, max_body_bytes=100))
    r = call(app, "POST", "/tasks", json={"kind": "send_email", "args": ["x" * 200]})
    assert r.status_code == 413
    assert error_of(r)["code"] == "too_large"


def test_chunked_body_over_limit_is_413_and_not_read_to_the_end(run_dir: str,
                                                                pool: FakePool) -> None:
    app = create_app(settings_for(run_dir, max_body_bytes=100))
    sent = []

    async def chunks() -> AsyncIterator[bytes]:
        for piece in (b'{"kind": "send_email", "args": ["', b"x" * 60, b"x" * 60, b"x" * 60,
                      b'"]}'):
            sent.append(piece)
            yield piece

    r = call(app, "POST", "/tasks", content=chunks())
    assert r.status_code == 413
    assert len(sent) == 3  # stopped at the first chunk over the limit


def test_frame_too_large_from_pool_is_413(app: ASGIApp, pool: FakePool) -> None:
    pool.errors["submit"] = {"code": "frame_too_large", "message": "too big"}
    assert call(app, "POST", "/tasks", json={"kind": "report"}).status_code == 413


# -- POST /tasks/batch ---------------------------------------------------------

def test_batch_202_all_records(app: ASGIApp, pool: FakePool) -> None:
    r = call(app, "POST", "/tasks/batch", json={"tasks": [
        {"kind": "send_email", "args": [1]}, {"kind": "report", "idempotency_key": "r1"}]})
    assert r.status_code == 202
    tasks = r.json()["tasks"]
    assert [t["kind"] for t in tasks] == ["send_email", "report"]
    assert all(set(t) == RECORD_KEYS for t in tasks)
    specs = dict(pool.calls)["submit"]["tasks"]
    assert specs[1]["idempotency_key"] == "r1"


@pytest.mark.parametrize(("body", "field"), [
    ({"tasks": []}, "tasks"),
    ({"tasks": [{"kind": "report"}] * 1001}, "tasks"),
    ({}, "tasks"),
    ({"tasks": [{"kind": "report"}], "extra": 1}, "extra"),
    ({"tasks": [{"kind": "report"}, 3]}, "tasks[1]"),
    ({"tasks": [{"kind": "report"}, {"kind": "report"}, {"kind": ""}]}, "tasks[2].kind"),
    ({"tasks": [{"kind": "report"}, {"kind": "report", "delay_s": "soon"}]}, "tasks[1].delay_s"),
    ({"tasks": [{"kind": "report"}, {"kind": "report", "args": json.loads("[" * 30 + "]" * 30)}]},
     "tasks[1].args"),
])
def test_batch_errors_name_the_item_field(app: ASGIApp, pool: FakePool, body: dict[str, Any],
                                          field: str) -> None:
    r = call(app, "POST", "/tasks/batch", json=body)
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] == field
    assert "submit" not in pool.ops()


def test_batch_goes_in_one_submit_and_forwards_the_pools_error_naming_the_item(
        app: ASGIApp, pool: FakePool) -> None:
    r = call(app, "POST", "/tasks/batch", json={"tasks": [{"kind": "report"},
                                                          {"kind": "nope"}]})
    assert r.status_code == 422
    err = error_of(r)
    assert (err["code"], err["field"]) == ("unknown_kind", "tasks[1].kind")
    # One submit with every item (the pool stores all or nothing), not one per item.
    assert [len(a["tasks"]) for op, a in pool.calls if op == "submit"] == [2]


# -- GET /tasks/{id} -----------------------------------------------------------

def test_get_unfinished_has_retry_after_finished_has_not(app: ASGIApp, pool: FakePool) -> None:
    rec = pool.add("running")
    r = call(app, "GET", f"/tasks/{rec['id']}")
    assert r.status_code == 200 and r.headers["retry-after"] == "1"
    pool.finish(rec["id"], {"when": dt.datetime(2024, 1, 2, 3, 4, 5), "n": [1, b"\x00"]})
    r = call(app, "GET", f"/tasks/{rec['id']}")
    assert r.status_code == 200 and "retry-after" not in r.headers
    body = r.json()
    assert set(body) == RECORD_KEYS and body["status"] == "succeeded"
    assert body["result"] == {"when": "2024-01-02T03:04:05", "n": [1, {"$bytes": "AA=="}]}


def test_retry_after_counts_down_to_not_before(app: ASGIApp, pool: FakePool) -> None:
    not_before = time.time() + 41.5
    rec = pool.add("retrying", not_before=not_before)
    before = time.time()
    r = call(app, "GET", f"/tasks/{rec['id']}")
    after = time.time()
    # The seconds left when the app answered, rounded up: however slow the call.
    assert math.ceil(not_before - after) <= int(r.headers["retry-after"]) <= math.ceil(
        not_before - before)


def test_get_unknown_task_is_404(app: ASGIApp, pool: FakePool) -> None:
    r = call(app, "GET", "/tasks/nope")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"


def test_wait_long_polls_the_pool(app: ASGIApp, pool: FakePool) -> None:
    rec = pool.add("running")

    async def body(c: httpx.AsyncClient) -> httpx.Response:
        asyncio.get_running_loop().call_later(0.2, pool.finish, rec["id"], 42)
        return await c.get(f"/tasks/{rec['id']}", params={"wait": "5"})
    r = run(app, body)
    assert r.status_code == 200 and r.json()["result"] == 42
    assert ("get", {"id": rec["id"], "wait_s": 5.0}) in pool.calls


@pytest.mark.parametrize("query", ["wait=-1", "wait=61", "wait=abc", "wait=nan", "wiat=5"])
def test_wait_out_of_range_is_422(app: ASGIApp, pool: FakePool, query: str) -> None:
    rec = pool.add()
    r = call(app, "GET", f"/tasks/{rec['id']}?{query}")
    assert r.status_code == 422
    assert error_of(r)["field"] == query.split("=")[0]


# -- GET /tasks ----------------------------------------------------------------

def test_list_passes_filters_and_returns_cursor(app: ASGIApp, pool: FakePool) -> None:
    for _ in range(3):
        pool.add("pending")
    pool.add("failed")
    r = call(app, "GET", "/tasks?status=pending&kind=send_email&limit=2&cursor=abc")
    assert r.status_code == 200
    body = r.json()
    assert len(body["tasks"]) == 2 and body["next_cursor"] == "next"
    assert all(set(t) == RECORD_KEYS for t in body["tasks"])
    assert dict(pool.calls)["list"] == {"status": "pending", "kind": "send_email", "limit": 2,
                                        "cursor": "abc"}
    assert call(app, "GET", "/tasks").json()["next_cursor"] is None


@pytest.mark.parametrize(("query", "field"), [
    ("status=done", "status"), ("limit=0", "limit"), ("limit=501", "limit"),
    ("limit=ten", "limit"), ("sort=asc", "sort"), ("status=failed&kind=k&status=pending",
                                                   "status")])
def test_list_filters_are_validated(app: ASGIApp, pool: FakePool, query: str, field: str) -> None:
    r = call(app, "GET", f"/tasks?{query}")
    assert r.status_code == 422
    assert error_of(r)["field"] == field


# -- DELETE /tasks/{id} --------------------------------------------------------

def test_delete_maps_200_404_409(app: ASGIApp, pool: FakePool) -> None:
    pending, running, done = pool.add("pending"), pool.add("running"), pool.add("succeeded")
    r = call(app, "DELETE", f"/tasks/{pending['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["cancelled_by"] == "http"
    r = call(app, "DELETE", f"/tasks/{done['id']}")
    assert r.status_code == 409
    assert "already finished" in error_of(r)["message"]
    r = call(app, "DELETE", f"/tasks/{running['id']}")
    assert r.status_code == 409 and "force" in error_of(r)["message"]
    r = call(app, "DELETE", f"/tasks/{running['id']}?force=true")
    assert r.status_code == 200
    assert call(app, "DELETE", "/tasks/missing").status_code == 404


# -- routing, methods, auth ----------------------------------------------------

def test_unknown_route_404_and_wrong_method_405(app: ASGIApp, pool: FakePool) -> None:
    r = call(app, "GET", "/nowhere")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = call(app, "PUT", "/tasks")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
    assert error_of(r)["code"] == "method_not_allowed"
    r = call(app, "GET", "/tasks/batch")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_auth_required_except_healthz(run_dir: str, pool: FakePool) -> None:
    app = create_app(settings_for(run_dir, auth_token="s3cret"))
    r = call(app, "POST", "/tasks", json={"kind": "report"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert error_of(r)["code"] == "unauthorized"
    assert "is required" in error_of(r)["message"]
    for wrong in ("Bearer wrong", "Basic s3cret"):
        r = call(app, "GET", "/tasks", headers={"Authorization": wrong})
        assert r.status_code == 401 and error_of(r)["field"] == "Authorization"
        assert "not this server's" in error_of(r)["message"]
        assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert call(app, "GET", "/metrics").status_code == 401
    assert call(app, "GET", "/healthz").json() == {"status": "ok"}
    r = call(app, "POST", "/tasks", json={"kind": "report"},
             headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 202
    assert [op for op in pool.ops() if op != "observe_http"] == ["submit"]


# -- pool trouble --------------------------------------------------------------

def test_503_when_no_pool_listens(run_dir: str) -> None:
    app = create_app(settings_for(run_dir))
    r = call(app, "POST", "/tasks", json={"kind": "report"})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    err = error_of(r)
    assert err["code"] == "pool_unavailable" and "cannot be reached" in err["message"]
    assert run_dir not in err["message"]
    assert call(app, "GET", "/readyz").status_code == 503
    assert call(app, "GET", "/healthz").status_code == 200


def test_metrics_fallback_when_pool_down(run_dir: str) -> None:
    r = call(create_app(settings_for(run_dir)), "GET", "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "offload_pool_up 0.0" in r.text and "# TYPE offload_pool_up gauge" in r.text


def test_metrics_from_pool(app: ASGIApp, pool: FakePool) -> None:
    r = call(app, "GET", "/metrics")
    assert r.status_code == 200 and "offload_pool_up 1.0" in r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_pool_internal_error_is_500_without_details(app: ASGIApp, pool: FakePool) -> None:
    pool.errors["stats"] = {"code": "internal", "message": "sqlite3.OperationalError at /x/y"}
    r = call(app, "GET", "/queue/stats")
    assert r.status_code == 500
    assert "sqlite3" not in error_of(r)["message"]


def test_unexpected_failure_is_500_and_logged(app: ASGIApp, pool: FakePool,
                                              caplog: pytest.LogCaptureFixture) -> None:
    pool.results["submit"] = {"unexpected": True}
    r = call(app, "POST", "/tasks", json={"kind": "report"})
    assert r.status_code == 500
    err = error_of(r)
    assert err["code"] == "internal" and "Traceback" not in r.text and "KeyError" not in r.text
    assert "KeyError" in caplog.text


# -- stats, health, readiness --------------------------------------------------

def test_queue_stats_readyz_healthz(app: ASGIApp, pool: FakePool) -> None:
    pool.add("pending")
    r = call(app, "GET", "/queue/stats")
    assert r.status_code == 200
    assert r.json()["counts"]["pending"] == 1 and r.json()["executors"][0]["pid"] == 1234
    r = call(app, "GET", "/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "executors_up": 2, "executors_wanted": 2}
    pool.health["executors_up"] = 0
    r = call(app, "GET", "/readyz")
    assert r.status_code == 503 and error_of(r)["code"] == "not_ready"
    assert call(app, "HEAD", "/healthz").status_code == 200


def test_schedules_answer_the_pools_rows_in_the_documented_shape(app: ASGIApp) -> None:
    r = call(app, "GET", "/schedules")
    assert r.status_code == 200
    body = msgspec.convert(r.json(), schemas.Schedules)  # the OpenAPI document's type
    (row,) = body.schedules
    assert (row.name, row.spec, row.last_run and row.last_run.status) == (
        "nightly", "0 3 * * * (Europe/Paris)", "succeeded")


def test_http_observations_are_shipped(app: ASGIApp, pool: FakePool) -> None:
    rec = pool.add()
    call(app, "GET", f"/tasks/{rec['id']}")
    call(app, "GET", "/tasks/missing")
    call(app, "GET", "/healthz")
    routes = [(m, route, status) for m, route, status, _ in pool.samples]
    assert routes == [("GET", "/tasks/{id}", 200), ("GET", "/tasks/{id}", 404)]
    assert all(isinstance(s[3], float) and s[3] >= 0 for s in pool.samples)


# -- a user app beside offload -------------------------------------------------

class UserApp:
    """A minimal ASGI app with lifespan, recording what it saw."""

    def __init__(self, lifespan_support: bool = True) -> None:
        self.lifespan_support = lifespan_support
        self.events: list[str] = []
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            if not self.lifespan_support:
                raise RuntimeError("no lifespan here")
            while True:
                message = await receive()
                self.events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        self.paths.append(scope["path"])
        body = json.dumps({"user": scope["path"]}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def test_mounted_app_gets_unmatched_paths(run_dir: str, pool: FakePool) -> None:
    user = UserApp()
    app = mount(user, settings_for(run_dir, auth_token="tok"))

    async def body(c: httpx.AsyncClient) -> list[httpx.Response]:
        return [await c.get("/"), await c.post("/signup"), await c.get("/tasks/a/b"),
                await c.get("/tasks"), await c.get("/healthz")]
    home, signup, nested, tasks, health = run(app, body)
    assert home.json() == {"user": "/"} and signup.json() == {"user": "/signup"}
    assert nested.json() == {"user": "/tasks/a/b"}
    assert tasks.status_code == 401  # offload's routes keep their token
    assert health.json() == {"status": "ok"}
    assert user.paths == ["/", "/signup", "/tasks/a/b"]
    assert user.events == ["lifespan.startup", "lifespan.shutdown"]


def test_lifespan_completes_with_and_without_user_lifespan(run_dir: str,
                                                           pool: FakePool) -> None:
    for user in (UserApp(), UserApp(lifespan_support=False), None):
        app = create_app(settings_for(run_dir), app=user)

        async def main(app: ASGIApp = app) -> list[dict[str, Any]]:
            async with lifespan(app) as sent:
                pass
            return sent
        sent = asyncio.run(main())
        assert [m["type"] for m in sent] == ["lifespan.startup.complete",
                                             "lifespan.shutdown.complete"]


def test_user_lifespan_failure_fails_startup(run_dir: str, pool: FakePool) -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    async def main() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await inbox.put({"type": "lifespan.startup"})

        async def send(message: Any) -> None:
            sent.append(message)
        app = create_app(settings_for(run_dir), app=failing)
        await asyncio.wait_for(app({"type": "lifespan"}, inbox.get, send), 5)
        return sent
    assert asyncio.run(main()) == [{"type": "lifespan.startup.failed", "message": "no database"}]


def test_app_setting_is_imported(run_dir: str, pool: FakePool) -> None:
    app = create_app(settings_for(run_dir, app="tests.server.test_api_unit:SETTING_APP"))
    assert call(app, "GET", "/elsewhere").json() == {"user": "/elsewhere"}


SETTING_APP = UserApp()


def test_served_under_a_prefix_by_a_starlette_mount(run_dir: str, pool: FakePool) -> None:
    """Starlette's Mount passes the full path and the prefix as root_path."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    offload = create_app(settings_for(run_dir))
    outer = Starlette(routes=[Mount("/offload", app=offload)])

    async def body(c: httpx.AsyncClient) -> list[httpx.Response]:
        return [await c.get("/offload/healthz"),
                await c.post("/offload/tasks", json={"kind": "report"}),
                await c.get("/offload/nothing-here")]

    async def main() -> list[httpx.Response]:
        async with lifespan(offload), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=outer), base_url="http://offload.test") as c:
            return await body(c)

    health, submitted, missing = asyncio.run(main())
    assert health.json() == {"status": "ok"}
    assert submitted.status_code == 202
    assert submitted.headers["location"] == f"/offload/tasks/{submitted.json()['id']}"
    assert missing.status_code == 404
