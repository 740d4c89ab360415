"""The API against its own OpenAPI document, fuzzed by schemathesis over HTTP
against a real gunicorn server (pool, executors, SQLite): every answer must
match the document (status, content type, headers, body schema), none may be
a 5xx, and a refused request must store nothing.

Bounded and repeatable: a fixed number of examples, derandomized (the same
code gets the same requests), no example database. Two parts: every
operation with valid and with invalid input, then sequences that follow the
document's links (``POST /tasks`` → ``GET``/``DELETE /tasks/{id}`` →
``POST /tasks/{id}/retry``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.generation import GenerationMode
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.procs import Env, ServerHandle, wait_for

TOKEN = "fuzz-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
# Registered kinds that take anything (echo) or nothing (noop), and one that is not.
KINDS = ["echo", "noop", "not_registered"]
SUBMITS = {("POST", "/tasks"), ("POST", "/tasks/batch")}
FUZZ = settings(max_examples=60, derandomize=True, database=None, deadline=None,
                suppress_health_check=list(HealthCheck))
STATEFUL = settings(max_examples=25, stateful_step_count=6, derandomize=True, database=None,
                    deadline=None, suppress_health_check=list(HealthCheck))


class Accepted:
    """The ids of every task the server said it stored (202 on a submit)."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def note(self, case: Case, response: Response) -> None:
        if (case.method.upper(), case.path) in SUBMITS and response.status_code == 202:
            body = response.json()
            self.ids.update(t["id"] for t in body.get("tasks", [body]))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    # wait is at most 0.5 s (the document says so), so long polls stay short.
    env = Env(tmp_path_factory.mktemp("fuzz"), auth_token=TOKEN, long_poll_max_s=0.5,
              log_level="warning")
    server = ServerHandle(env, ready=False)
    try:
        wait_for(lambda: server.http("GET", "/readyz", headers=AUTH)[0] == 200, 90,
                 what="gunicorn /readyz")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def schema(live: ServerHandle) -> Any:
    doc = httpx.get(live.env.url + "/openapi.json").json()  # public: no token
    # The document allows any kind; narrowed here to a few, so that submits
    # are accepted often enough for the links to be followed.
    doc["components"]["schemas"]["TaskBody"]["properties"]["kind"] = {"enum": KINDS}
    loaded = schemathesis.openapi.from_dict(doc)
    loaded.config.update(base_url=live.env.url, headers=AUTH, request_timeout=30)
    return loaded


@pytest.fixture(scope="module")
def accepted() -> Accepted:
    return Accepted()


def stored(server: ServerHandle) -> int:
    status, stats, _ = server.http("GET", "/queue/stats", headers=AUTH)
    assert status == 200
    return int(sum(stats["counts"].values()))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_documented(live: ServerHandle, schema: Any,
                                              accepted: Accepted, mode: GenerationMode) -> None:
    @given(case=schema.as_strategy(mode))
    @FUZZ
    def one(case: Case) -> None:
        response = case.call()
        accepted.note(case, response)
        case.validate_response(response, checks=CHECKS)

    one()
    assert stored(live) == len(accepted.ids)  # nothing stored for a refused request


def test_linked_sequences_answer_as_documented(live: ServerHandle, schema: Any,
                                               accepted: Accepted) -> None:
    base = schema.as_state_machine()
    assert base.schema.statistic.transitions.total >= 6  # the links were read

    class Machine(base):  # type: ignore[valid-type, misc]
        def after_call(self, response: Response, case: Case) -> None:
            accepted.note(case, response)

        def validate_response(self, response: Response, case: Case, *args: Any,
                              **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    Machine.run(settings=STATEFUL)
    assert stored(live) == len(accepted.ids)
    assert accepted.ids  # links need accepted submits to follow


def test_the_page_is_served_beside_the_document(live: ServerHandle) -> None:
    status, page, _ = live.http("GET", "/docs")
    assert status == 200 and "openapi.json" in page
