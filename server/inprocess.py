"""offload's task API answered in this process, for ``server.Client`` in tests.

While a test mode of ``executor.testing`` (``inline()``, ``fake()``) is on,
``Client`` and ``AsyncClient`` send their requests here instead of over
HTTP: code that submits by kind is tested without a server, and what it
submits is checked as the server and the pool check it. Each request is
answered with the real parts: ``server.validate`` turns the body into pool
specs (422 ``invalid`` naming the field), the mode takes them as the pool
does (``executor.testing.calls.take``: 422 ``unknown_kind``, arguments that
do not fit the kind's function), and records are built by
``server.records.to_json``. Refusals raise the ``ClientError`` the HTTP
answer would have raised.

Routes: ``POST /tasks``, ``POST /tasks/batch``, ``GET /tasks/{id}`` (with
``?wait=``: a task of ``fake()`` stays ``pending`` until ``run_all()``, so
``wait`` ends in ``WaitTimeout``), ``DELETE /tasks/{id}``. Any other route
raises ``ClientError`` saying it has no answer in a test mode.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from executor.client.divert import Handler
from executor.store.records import FINISHED
from executor.wire.errors import PoolError
from server import records, validate
from server.errors import ApiError, from_pool_error

if TYPE_CHECKING:
    from server.client import ClientError, _Req

_POLL_S = 0.01  # a ?wait= on an unfinished task: nothing changes it meanwhile


def answer(mode: Handler, req: _Req) -> Any:
    """The JSON answer ``mode`` gives ``req``; raises ``ClientError`` as the
    HTTP answer would. Blocks while ``inline()`` runs submitted calls."""
    try:
        return _answer(mode, req)
    except ApiError as exc:
        raise _client_error(exc) from None


def _answer(mode: Handler, req: _Req) -> Any:
    method, path = req.method, req.path
    now = time.time()
    if path == "/tasks" and method == "POST":
        specs = [validate.submit_body(req.body or b"{}", now)]
        return records.to_json(mode.record(_submit(mode, specs, "tasks[0].")[0]))
    if path == "/tasks/batch" and method == "POST":
        ids = _submit(mode, validate.batch_body(req.body or b"{}", now), None)
        return {"tasks": [records.to_json(mode.record(i)) for i in ids]}
    if path.startswith("/tasks/") and path.count("/") == 2:
        task_id = unquote(path[len("/tasks/"):])
        try:
            if method == "GET":
                wire = mode.record(task_id)
                if wire["status"] not in FINISHED and (req.params or {}).get("wait"):
                    time.sleep(_POLL_S)
                return records.to_json(wire)
            if method == "DELETE":
                force = validate.force(dict(req.params or {}))
                return records.to_json(mode.cancel(task_id, force))
        except PoolError as exc:
            raise from_pool_error(exc) from None
    raise ApiError(404, "not_found", f"{method} {path} has no answer in executor.testing's "
                   f"{mode.name}() mode (it answers POST /tasks, POST /tasks/batch, "
                   "GET and DELETE /tasks/{id})")


def _submit(mode: Handler, specs: list[dict[str, Any]], prefix: str | None) -> list[str]:
    try:
        return mode.submit(specs)
    except PoolError as exc:
        raise from_pool_error(exc, prefix) from None


def _client_error(exc: ApiError) -> ClientError:
    from server.client import _BY_STATUS, ClientError

    cls = _BY_STATUS.get(exc.status, ClientError)
    return cls(exc.message, status=exc.status, code=exc.code, field=exc.field)
