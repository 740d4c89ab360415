"""The pool's refusal of a call that does not fit the task's signature, as the
HTTP API answers it: 422, code ``invalid``, the field ``args``/``kwargs`` (in a
batch ``tasks[i].args``), and the pool's message unchanged."""

from __future__ import annotations

import pytest

from server.http import ASGIApp
from tests.server.conftest import call, error_of
from tests.server.fakepool import FakePool

MESSAGE = ("send_email(): missing a required argument: 'subject'; "
           "the task's signature is send_email(to, subject, body=...)")


@pytest.mark.parametrize("field", ["args", "kwargs"])
def test_single_submit_names_args_or_kwargs(app: ASGIApp, pool: FakePool, field: str) -> None:
    pool.errors["submit"] = {"code": "invalid", "message": MESSAGE, "field": f"tasks[0].{field}"}
    r = call(app, "POST", "/tasks", json={"kind": "send_email", "args": ["ada@example.com"]})
    assert r.status_code == 422
    assert error_of(r) == {"code": "invalid", "message": MESSAGE, "field": field}
    assert pool.ops().count("submit") == 1  # answered as refused, not tried again


def test_batch_names_the_item(app: ASGIApp, pool: FakePool) -> None:
    pool.errors["submit"] = {"code": "invalid", "message": MESSAGE, "field": "tasks[1].args"}
    r = call(app, "POST", "/tasks/batch", json={"tasks": [
        {"kind": "report"}, {"kind": "send_email", "args": ["ada@example.com"]}]})
    assert r.status_code == 422
    assert error_of(r) == {"code": "invalid", "message": MESSAGE, "field": "tasks[1].args"}
    assert pool.ops().count("submit") == 1  # answered as refused, not tried again
