"""The OpenAPI 3.1 document of offload's HTTP API, served at ``/openapi.json``.

Bodies and query parameters come from ``server.schemas`` (the types that
validate requests); this module adds what only HTTP says: each operation's
route, status codes, headers (``Location``, ``Retry-After``,
``Idempotency-Key``, ``WWW-Authenticate``), the bearer scheme, and the links
that lead from ``POST /tasks`` to ``GET``/``DELETE /tasks/{id}`` and on to a
retry. ``OPERATIONS`` is the route table the app is checked against
(``tests/server/test_openapi.py``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from server import schemas

REF = "#/components/schemas/{name}"
JSON = "application/json"

# (path, method) -> operationId: every route the app serves, and only those.
OPERATIONS: dict[tuple[str, str], str] = {
    ("/tasks", "post"): "submitTask",
    ("/tasks", "get"): "listTasks",
    ("/tasks/batch", "post"): "submitBatch",
    ("/tasks/retry", "post"): "retryFailed",
    ("/tasks/{id}", "get"): "getTask",
    ("/tasks/{id}", "delete"): "cancelTask",
    ("/tasks/{id}/retry", "post"): "retryTask",
    ("/queue/stats", "get"): "queueStats",
    ("/schedules", "get"): "listSchedules",
    ("/metrics", "get"): "metrics",
    ("/healthz", "get"): "healthz",
    ("/readyz", "get"): "readyz",
    ("/openapi.json", "get"): "openapi",
    ("/docs", "get"): "docs",
}
PUBLIC = frozenset({"/healthz", "/openapi.json", "/docs"})
"""Paths served without the bearer token: liveness, and the API's description."""

_ERRORS: dict[str, tuple[str, str]] = {  # status -> (response name, description)
    "400": ("MalformedJson", "the body is not a JSON object"),
    "401": ("Unauthorized", "the bearer token is missing or wrong (only when auth_token is "
                            "set)"),
    "404": ("NotFound", "no task with this id (or it was purged after result_ttl_s)"),
    "408": ("RequestTimeout", "the body did not all arrive within http_timeout_s"),
    "409": ("Conflict", "the task is not in a state that allows this"),
    "413": ("TooLarge", "the body is larger than max_body_bytes"),
    "414": ("UriTooLong", "the request line (path and query) is longer than gunicorn's "
                          "limit_request_line"),
    "415": ("UnsupportedMediaType", "Content-Type is not application/json"),
    "422": ("Invalid", "a field is refused; error.field names it"),
    "503": ("Unavailable", "the task pool or its store cannot answer now; retry after "
                           "Retry-After seconds"),
}
_BODY_ERRORS = ("400", "401", "408", "413", "415", "422", "503")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(name=name)}


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}, **extra}


def _errors(*statuses: str) -> dict[str, Any]:
    return {s: {"$ref": f"#/components/responses/{_ERRORS[s][0]}"} for s in statuses}


def _query(struct: type[msgspec.Struct]) -> list[dict[str, Any]]:
    """The struct's fields as query parameters, each with its JSON Schema."""
    (_, ), components = msgspec.json.schema_components([struct], ref_template=REF)
    schema = next(iter(components.values()))
    return [{"name": name, "in": "query", "required": False, "schema": prop}
            for name, prop in schema["properties"].items()]


_ID = {"$ref": "#/components/parameters/TaskId"}
_KEY = {"$ref": "#/components/parameters/IdempotencyKey"}
_LOCATION = {"Location": {"$ref": "#/components/headers/Location"}}
_TASK_LINKS = {
    "GetTask": {"operationId": "getTask", "parameters": {"id": "$response.body#/id"},
                "description": "the task just accepted"},
    "CancelTask": {"operationId": "cancelTask", "parameters": {"id": "$response.body#/id"},
                   "description": "cancel the task just accepted"},
    "RetryTask": {"operationId": "retryTask", "parameters": {"id": "$response.body#/id"},
                  "description": "run it again once it has failed or been cancelled"},
}


def _operations(long_poll_max_s: float) -> dict[tuple[str, str], dict[str, Any]]:
    record = _ref("TaskRecord")
    body_errors = _errors(*_BODY_ERRORS)
    return {
        ("/tasks", "post"): {
            "summary": "Submit a task",
            "description": "202 once the task is stored. An Idempotency-Key header (or the "
                           "idempotency_key field) returns the same task when sent again.",
            "parameters": [_KEY],
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("TaskBody")}}},
            "responses": {"202": _json(record, "stored; Location is the task's URL",
                                       headers=_LOCATION, links=_TASK_LINKS), **body_errors},
        },
        ("/tasks", "get"): {
            "summary": "List tasks, newest first",
            "parameters": _query(schemas.ListQuery),
            "responses": {"200": _json(_ref("TaskPage"), "a page of records"),
                          **_errors("401", "414", "422", "503")},
        },
        ("/tasks/batch", "post"): {
            "summary": "Submit several tasks, all or nothing",
            "description": "Items without their own idempotency_key get the header's, "
                           "numbered (key#0, key#1...).",
            "parameters": [_KEY],
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("BatchBody")}}},
            "responses": {"202": _json(_ref("TaskRecords"), "every task stored"),
                          **body_errors},
        },
        ("/tasks/retry", "post"): {
            "summary": "Run failed tasks again",
            "description": "Failed tasks matching the filter go back to pending, attempts "
                           "reset, oldest failure first, at most `limit` per call; call "
                           "again while `retried` equals the limit.",
            "requestBody": {"required": False,
                            "content": {JSON: {"schema": _ref("RetryFilter")}}},
            "responses": {"202": _json(_ref("Retried"), "the tasks put back to run"),
                          **body_errors},
        },
        ("/tasks/{id}", "get"): {
            "summary": "A task's record",
            "parameters": [_ID, *_query(schemas.task_query(long_poll_max_s))],
            "responses": {
                "200": _json(record, "the record; Retry-After while it is unfinished",
                             headers={"Retry-After": {"$ref": "#/components/headers/"
                                                              "RetryAfter"}},
                             links={"CancelTask": {"operationId": "cancelTask",
                                                   "parameters": {"id": "$request.path.id"}},
                                    "RetryTask": {"operationId": "retryTask",
                                                  "parameters": {"id": "$request.path.id"}}}),
                **_errors("401", "404", "422", "503")},
        },
        ("/tasks/{id}", "delete"): {
            "summary": "Cancel a task",
            "description": "A pending or retrying task is cancelled; a running one only with "
                           "force=true (its executor is killed). 409 once it has ended.",
            "parameters": [_ID, *_query(schemas.CancelQuery)],
            "responses": {"200": _json(record, "the cancelled record",
                                       links={"RetryTask": {"operationId": "retryTask",
                                                            "parameters": {
                                                                "id": "$request.path.id"}}}),
                          **_errors("401", "404", "409", "422", "503")},
        },
        ("/tasks/{id}/retry", "post"): {
            "summary": "Run a failed or cancelled task again",
            "description": "The same task (same id) goes back to pending with its attempts "
                           "reset and runs its stored call again. 409 if it has not ended, "
                           "or it succeeded.",
            "parameters": [_ID],
            "responses": {"202": _json(record, "put back to run", headers=_LOCATION,
                                       links={"GetTask": _TASK_LINKS["GetTask"]}),
                          **_errors("401", "404", "409", "422", "503")},
        },
        ("/queue/stats", "get"): {
            "summary": "Counts by status, queue depth, executors",
            "responses": {"200": _json(_ref("QueueStats"), "the pool's view now"),
                          **_errors("401", "503")},
        },
        ("/schedules", "get"): {
            "summary": "Periodic tasks: each schedule, its next slot, its last slot and run",
            "responses": {"200": _json(_ref("Schedules"), "the schedules the pool runs"),
                          **_errors("401", "503")},
        },
        ("/metrics", "get"): {
            "summary": "Prometheus metrics",
            "responses": {"200": {"description": "Prometheus text format 0.0.4",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **_errors("401")},
        },
        ("/healthz", "get"): {
            "summary": "Liveness: this HTTP worker answers", "security": [],
            "responses": {"200": _json(_ref("Healthy"), "alive")},
        },
        ("/readyz", "get"): {
            "summary": "Readiness: the pool answers and an executor is up",
            "responses": {"200": _json(_ref("Ready"), "ready"), **_errors("401", "503")},
        },
        ("/openapi.json", "get"): {
            "summary": "This document", "security": [],
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
        },
        ("/docs", "get"): {
            "summary": "This document as a page", "security": [],
            "responses": {"200": {"description": "HTML",
                                  "content": {"text/html": {"schema": {"type": "string"}}}}},
        },
    }


def _components() -> dict[str, Any]:
    _, schemas_ = msgspec.json.schema_components([*schemas.REQUESTS, *schemas.RESPONSES],
                                                 ref_template=REF)
    error = _ref("ErrorBody")
    responses: dict[str, Any] = {}
    for name, description in _ERRORS.values():
        responses[name] = _json(error, description)
    responses["Unauthorized"]["headers"] = {
        "WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}}
    responses["Unavailable"]["headers"] = {
        "Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return {
        "schemas": schemas_,
        "responses": responses,
        "parameters": {
            "TaskId": {"name": "id", "in": "path", "required": True,
                       "schema": {"type": "string", "minLength": 1}},
            "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": False,
                               "description": "a retried submit with the same key returns "
                                              "the first task instead of storing another",
                               "schema": {"type": "string", "minLength": 1,
                                          "maxLength": schemas.MAX_KEY_CHARS}},
        },
        "headers": {
            "Location": {"description": "the task's URL", "schema": {"type": "string"}},
            "RetryAfter": {"description": "seconds to wait before asking again",
                           "schema": {"type": "integer", "minimum": 1}},
        },
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "the server's auth_token"}},
    }


def document(long_poll_max_s: float, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document (``long_poll_max_s`` bounds ``wait``)."""
    paths: dict[str, dict[str, Any]] = {}
    for (path, method), op in _operations(long_poll_max_s).items():
        paths.setdefault(path, {})[method] = {"operationId": OPERATIONS[path, method], **op}
    return {
        "openapi": "3.1.0",
        "info": {"title": "offload", "version": version,
                 "description": "Durable background tasks: submit, follow, cancel and "
                                "re-run them. Errors are {\"error\": {\"code\", \"message\", "
                                "\"field\"}}."},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": _components(),
    }
