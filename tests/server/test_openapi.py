"""The OpenAPI document against the app that serves it, and the retry routes
(against the fake pool): a route the document does not describe, or a
documented one the app does not serve, fails here."""

from __future__ import annotations

import re
from typing import Any

import pytest

from server import create_app, schemas, validate
from server.app import OffloadApp
from server.errors import ApiError
from server.http import ASGIApp
from server.openapi import OPERATIONS, PUBLIC
from tests.server.conftest import call, error_of, settings_for
from tests.server.fakepool import FakePool

METHODS = {"get", "post", "put", "patch", "delete"}


def _doc(app: ASGIApp) -> dict[str, Any]:
    r = call(app, "GET", "/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc: dict[str, Any] = r.json()
    return doc


def test_every_route_is_in_the_document_and_nothing_else(app: ASGIApp) -> None:
    assert isinstance(app, OffloadApp)
    doc = _doc(app)
    served = {(template, m.lower()) for template, methods in app.routes().items()
              for m in methods}
    documented = {(path, m) for path, item in doc["paths"].items() for m in item
                  if m in METHODS}
    assert served == documented == set(OPERATIONS)
    assert doc["openapi"] == "3.1.0"


def test_public_routes_are_exactly_those_without_security(run_dir: str, pool: FakePool) -> None:
    app = create_app(settings_for(run_dir, auth_token="s3cret"))
    doc = _doc(app)  # served without the token
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "the server's auth_token"}
    assert doc["security"] == [{"bearer": []}]
    for (path, method), op_id in OPERATIONS.items():
        op = doc["paths"][path][method]
        assert op["operationId"] == op_id
        public = op.get("security") == []
        assert public == (path in PUBLIC), path
        if not public:
            assert "401" in op["responses"], path
            url = path.replace("{id}", "t1")
            r = call(app, method.upper(), url)
            assert r.status_code == 401, (method, path)


def test_links_headers_and_error_schema(app: ASGIApp) -> None:
    doc = _doc(app)
    ops = {op["operationId"] for item in doc["paths"].values() for op in item.values()}
    submit = doc["paths"]["/tasks"]["post"]
    links = submit["responses"]["202"]["links"]
    assert {links[n]["operationId"] for n in links} == {"getTask", "cancelTask", "retryTask"}
    assert all(link["parameters"] == {"id": "$response.body#/id"} for link in links.values())
    for item in doc["paths"].values():
        for op in item.values():
            for resp in op["responses"].values():
                for link in resp.get("links", {}).values():
                    assert link["operationId"] in ops
    assert "Location" in submit["responses"]["202"]["headers"]
    assert {"$ref": "#/components/parameters/IdempotencyKey"} in submit["parameters"]
    assert "Retry-After" in doc["paths"]["/tasks/{id}"]["get"]["responses"]["200"]["headers"]
    assert "Retry-After" in doc["components"]["responses"]["Unavailable"]["headers"]
    error = doc["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]
    detail = doc["components"]["schemas"]["ErrorDetail"]
    assert set(detail["properties"]) == {"code", "message", "field"}


def test_documented_bounds_are_the_enforced_ones(app: ASGIApp) -> None:
    doc = _doc(app)
    body = doc["components"]["schemas"]["TaskBody"]["properties"]
    assert body["max_retries"]["maximum"] == validate.MAX_RETRIES
    assert body["timeout_s"]["maximum"] == validate.MAX_TIMEOUT_S
    params = {p["name"]: p["schema"] for p in doc["paths"]["/tasks"]["get"]["parameters"]}
    assert set(params) == {"status", "kind", "limit", "cursor"}
    assert params["limit"]["maximum"] == schemas.LIST_LIMIT_MAX
    validate.list_args({"limit": str(params["limit"]["maximum"])})
    with pytest.raises(ApiError):
        validate.list_args({"limit": str(params["limit"]["maximum"] + 1)})
    wait = next(p for p in doc["paths"]["/tasks/{id}"]["get"]["parameters"]
                if p.get("name") == "wait")
    assert wait["schema"]["maximum"] == 60.0  # the settings' long_poll_max_s


def test_docs_page_ships_in_the_package_and_loads_nothing_from_elsewhere(app: ASGIApp) -> None:
    r = call(app, "GET", "/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert 'fetch("openapi.json")' in r.text
    assert not re.search(r"(src|href)=\"(https?:)?//", r.text)


def test_retry_a_failed_task_is_202_with_location(app: ASGIApp, pool: FakePool) -> None:
    failed = pool.add("failed", attempts=3, error={"reason": "error", "message": "boom",
                                                   "traceback": ""})
    r = call(app, "POST", f"/tasks/{failed['id']}/retry")
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/tasks/{failed['id']}"
    assert (r.json()["status"], r.json()["attempts"], r.json()["error"]) == ("pending", 0, None)


@pytest.mark.parametrize("status", ["pending", "running", "retrying", "succeeded"])
def test_retry_of_a_task_that_has_not_failed_is_409(app: ASGIApp, pool: FakePool,
                                                    status: str) -> None:
    rec = pool.add(status)
    r = call(app, "POST", f"/tasks/{rec['id']}/retry")
    assert r.status_code == 409 and error_of(r)["code"] == "conflict"
    assert call(app, "POST", "/tasks/missing/retry").status_code == 404
    assert error_of(call(app, "POST", f"/tasks/{rec['id']}/retry?x=1"))["field"] == "x"


def test_bulk_retry_passes_the_filter_and_answers_how_many(app: ASGIApp, pool: FakePool) -> None:
    a, b, _ = pool.add("failed", kind="report"), pool.add("failed", kind="report"), pool.add(
        "failed", kind="send_email")
    r = call(app, "POST", "/tasks/retry", json={"kind": "report", "finished_after": 0})
    assert r.status_code == 202
    assert r.json()["retried"] == 2 and set(r.json()["ids"]) == {a["id"], b["id"]}
    assert dict(pool.calls)["retry_failed"] == {"kind": "report", "finished_after": 0.0,
                                                "limit": schemas.RETRY_LIMIT_DEFAULT}
    assert call(app, "POST", "/tasks/retry").status_code == 202  # no body: every kind
    r = call(app, "POST", "/tasks/retry", json={"limit": schemas.RETRY_LIMIT_MAX + 1})
    assert r.status_code == 422 and error_of(r)["field"] == "limit"


def test_paths_near_the_retry_route_are_not_found(app: ASGIApp, pool: FakePool) -> None:
    for path in ("/tasks//retry", "/tasks/a/retry/x", "/tasks/a/b", "/tasks/a/retr"):
        assert call(app, "POST", path).status_code == 404, path


def test_an_id_with_an_encoded_slash_or_bad_utf8_is_one_id(app: ASGIApp, pool: FakePool) -> None:
    for path in ("/tasks/a%2Fretry", "/tasks/%ED%A0%80", "/tasks/a%2Fb/retry"):
        r = call(app, "GET" if not path.endswith("/retry") else "POST", path)
        assert r.status_code == 404 and error_of(r)["code"] == "not_found", path
    assert ("get", {"id": "a/retry"}) in pool.calls
    assert ("retry", {"id": "a/b"}) in pool.calls
