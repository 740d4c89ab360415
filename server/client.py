"""The HTTP client of offload's task API, for apps that run on other hosts.

::

    from server import Client

    with Client("http://tasks.internal:8000", token="s3cret") as client:
        task_id = client.submit("send_email", "ada@example.com", subject="Welcome")
        record = client.wait(task_id, timeout_s=30)

``Client`` is synchronous; ``AsyncClient`` has the same methods as
coroutines (``async with AsyncClient(...) as client``). Both keep one httpx
connection pool (keep-alive) and send the bearer token on every request.

- ``submit(kind, /, *args, **kwargs) -> id``: every keyword goes to the task.
- ``submit_with(kind, args, kwargs, *, delay_s, eta, priority, max_retries,
  timeout_s, idempotency_key) -> id``: the same with the API's options.
- ``submit_many(bodies) -> ids``: ``POST /tasks/batch``, all or nothing; each
  body is a submit body ``{"kind", "args", "kwargs", options...}``.
- ``get(id) -> record``; ``cancel(id, force=False) -> record``.
- ``list_tasks(status, kind, limit, cursor) -> page``; ``stats()``;
  ``health(ready=False)``.
- ``retry(id) -> record`` runs a failed or cancelled task again (the same
  task, attempts reset); ``retry_failed(kind, finished_after,
  finished_before, limit) -> {"retried", "ids"}`` does so for failed tasks.
- ``wait(id, timeout_s) -> record`` long-polls (``?wait=``) until the task
  has finished, and raises ``WaitTimeout`` (a ``TimeoutError``) if it has not
  within ``timeout_s``.

Arguments must be JSON values: anything else raises ``TypeError`` naming
the argument, before anything is sent. Refusals raise a ``ClientError``
carrying the API's error (``status``, ``code``, ``message``, ``field``):
``InvalidRequest`` (400/413/415/422, e.g. code ``unknown_kind``, field
``kind``), ``Unauthorized`` (401), ``NotFound`` (404), ``Conflict`` (409),
``Unavailable`` (502/503/504, or the server could not be reached or did not
answer in time; ``retry_after_s`` when the server said). Nothing is retried
automatically: resubmit with the same ``idempotency_key`` to make a retry safe.

Inside ``executor.testing.inline()`` or ``fake()`` (tests of the code that
submits) requests are answered in this process instead (``server.inprocess``):
tasks submitted by kind are checked as the server checks them, then run or
recorded by the mode.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx

from executor.client import divert
from executor.store.records import FINISHED
from executor.wire.errors import OffloadError

LONG_POLL_S = 20.0
"""Default longest single ``?wait=`` (the server's ``long_poll_max_s`` defaults to 60)."""
DEFAULT_TIMEOUT_S = 10.0
_SLACK_S = 5.0  # added to a long poll's HTTP timeout


class ClientError(OffloadError):
    """The API refused a request, or could not be reached. ``status`` is the
    HTTP status (``None`` if there was no answer); ``code``, ``message`` and
    ``field`` come from the API's JSON error body."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "error",
                 field: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        where = f", field {self.field}" if self.field else ""
        status = f"HTTP {self.status}, " if self.status is not None else ""
        return f"{self.message} ({status}{self.code}{where})"


class InvalidRequest(ClientError):
    """400, 413, 415 or 422: the request was refused; ``field`` names what is wrong."""


class Unauthorized(ClientError):
    """401: the token is missing or wrong."""


class NotFound(ClientError):
    """404: no task with this id (or it was purged after ``result_ttl_s``)."""


class Conflict(ClientError):
    """409: the task cannot be cancelled (it already ended, or runs and ``force`` was off)."""


class Unavailable(ClientError):
    """The server or its task pool cannot be reached now; retry after ``retry_after_s``."""


class WaitTimeout(ClientError, TimeoutError):
    """``wait`` gave up: the task had not finished. ``record`` is the last one seen."""

    def __init__(self, task_id: str, timeout_s: float, record: dict[str, Any] | None) -> None:
        status = record["status"] if record else "unknown"
        super().__init__(f"task {task_id} did not finish within {timeout_s:g} s "
                         f"(status {status})", code="wait_timeout")
        self.task_id = task_id
        self.record = record


_BY_STATUS: dict[int, type[ClientError]] = {
    400: InvalidRequest, 401: Unauthorized, 404: NotFound, 409: Conflict, 413: InvalidRequest,
    415: InvalidRequest, 422: InvalidRequest, 502: Unavailable, 503: Unavailable,
    504: Unavailable,
}


class _Req(NamedTuple):
    method: str
    path: str
    params: dict[str, str] | None = None
    body: bytes | None = None
    timeout_s: float | None = None


def _json_bytes(value: Any, what: str) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} cannot be sent as JSON: {exc}; pass str, int, float, bool, "
                        "None, lists and dicts of them (e.g. a date as its isoformat())") from None


def _check_args(args: Sequence[Any], kwargs: Mapping[str, Any], where: str = "") -> None:
    for i, value in enumerate(args):
        _json_bytes(value, f"{where}argument args[{i}]")
    for key, value in kwargs.items():
        if not isinstance(key, str):
            raise TypeError(f"{where}keyword argument names must be str, got {key!r}")
        _json_bytes(value, f"{where}argument {key!r}")


def _body(kind: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None,
          options: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": kind, "args": list(args), "kwargs": dict(kwargs or {})}
    body.update((k, v) for k, v in options.items() if v is not None)
    return body


def _task_path(task_id: str) -> str:
    return "/tasks/" + quote(task_id, safe="")


def _submit_req(body: Mapping[str, Any]) -> _Req:
    try:
        raw = _json_bytes(body, "the task")
    except TypeError:
        _check_args(body.get("args", ()), body.get("kwargs", {}))
        raise
    return _Req("POST", "/tasks", body=raw)


def _batch_req(bodies: Iterable[Mapping[str, Any]]) -> _Req:
    items = [dict(b) for b in bodies]
    try:
        raw = _json_bytes({"tasks": items}, "the tasks")
    except TypeError:
        for i, item in enumerate(items):
            _check_args(item.get("args", ()), item.get("kwargs", {}), f"tasks[{i}]: ")
        raise
    return _Req("POST", "/tasks/batch", body=raw)


def _list_req(status: str | None, kind: str | None, limit: int | None,
              cursor: str | None) -> _Req:
    params = {k: str(v) for k, v in (("status", status), ("kind", kind), ("limit", limit),
                                     ("cursor", cursor)) if v is not None}
    return _Req("GET", "/tasks", params or None)


def _retry_failed_req(kind: str | None, finished_after: float | None,
                      finished_before: float | None, limit: int | None) -> _Req:
    body = {k: v for k, v in (("kind", kind), ("finished_after", finished_after),
                              ("finished_before", finished_before), ("limit", limit))
            if v is not None}
    return _Req("POST", "/tasks/retry", body=_json_bytes(body, "the filter"))


def _error(resp: httpx.Response) -> ClientError:
    try:
        err = resp.json()["error"]
        code, message, field = str(err["code"]), str(err["message"]), err.get("field")
    except (ValueError, KeyError, TypeError):
        code, message, field = "http_error", resp.text[:200] or resp.reason_phrase, None
    retry_after = resp.headers.get("retry-after")
    try:
        retry_after_s = float(retry_after) if retry_after is not None else None
    except ValueError:
        retry_after_s = None
    cls = _BY_STATUS.get(resp.status_code, ClientError)
    return cls(message, status=resp.status_code, code=code, field=field,
               retry_after_s=retry_after_s)


def _result(resp: httpx.Response) -> Any:
    if resp.is_success:
        return resp.json()
    raise _error(resp)


def _unreachable(exc: httpx.HTTPError, base_url: str) -> Unavailable:
    code = "timeout" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return Unavailable(f"no answer from {base_url}: {type(exc).__name__}: {exc}", code=code)


def _headers(token: str | None) -> dict[str, str]:
    headers = {"accept": "application/json", "content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return headers


def _wait_req(task_id: str, wait_s: float, timeout_s: float) -> _Req:
    return _Req("GET", _task_path(task_id), {"wait": f"{wait_s:.3f}"}, None,
                timeout_s + wait_s + _SLACK_S)


def _options(delay_s: float | None, eta: float | None, priority: int | None,
             max_retries: int | None, timeout_s: float | None,
             idempotency_key: str | None) -> dict[str, Any]:
    return {"delay_s": delay_s, "eta": eta, "priority": priority, "max_retries": max_retries,
            "timeout_s": timeout_s, "idempotency_key": idempotency_key}


def _in_process(req: _Req) -> Any:
    """``req`` answered by the test mode that is on (``server.inprocess``)."""
    from server.inprocess import answer  # only ever needed in tests

    mode = divert.handler
    if mode is None:  # left between the check and here (another thread)
        raise Unavailable("executor.testing's mode ended while this request was made",
                          code="unreachable")
    return answer(mode, req)


class _Endpoint:
    """What both clients share: where the API is and how long to wait for it."""

    def __init__(self, base_url: str, timeout_s: float, long_poll_s: float) -> None:
        if not long_poll_s > 0:
            raise ValueError(f"long_poll_s must be > 0, got {long_poll_s!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.long_poll_s = long_poll_s

    def _next_poll(self, task_id: str, timeout_s: float, deadline: float,
                   record: dict[str, Any] | None) -> _Req | None:
        """``wait``'s loop, without its I/O: ``None`` once ``record`` (the
        latest answer) is finished, else the next long poll; ``WaitTimeout``
        past ``deadline``."""
        if record is not None and record["status"] in FINISHED:
            return None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if record is None:  # asked once at least, even with timeout_s=0
                return _wait_req(task_id, 0.0, self.timeout_s)
            raise WaitTimeout(task_id, timeout_s, record)
        return _wait_req(task_id, min(remaining, self.long_poll_s), self.timeout_s)


class Client(_Endpoint):
    """Synchronous client of the task API at ``base_url``; see the module docstring.

    ``timeout_s`` bounds each request (long polls get theirs on top);
    ``long_poll_s`` is the longest single ``?wait=`` of ``wait`` and must not
    pass the server's ``long_poll_max_s``. ``transport`` is for tests. Use it
    as a context manager, or ``close()`` it.
    """

    def __init__(self, base_url: str, token: str | None = None, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S, long_poll_s: float = LONG_POLL_S,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, timeout_s, long_poll_s)
        self._http = httpx.Client(base_url=self.base_url, headers=_headers(token),
                                  timeout=timeout_s, transport=transport)

    def _send(self, req: _Req) -> Any:
        if divert.handler is not None:  # a test mode of executor.testing is on
            return _in_process(req)
        try:
            resp = self._http.request(req.method, req.path, params=req.params, content=req.body,
                                      timeout=req.timeout_s or self.timeout_s)
        except httpx.HTTPError as exc:
            raise _unreachable(exc, self.base_url) from exc
        return _result(resp)

    def submit(self, kind: str, /, *args: Any, **kwargs: Any) -> str:
        """Submit ``kind(*args, **kwargs)``; the task's id once it is stored."""
        return str(self._send(_submit_req(_body(kind, args, kwargs, {})))["id"])

    def submit_with(self, kind: str, args: Sequence[Any] = (),
                    kwargs: Mapping[str, Any] | None = None, *, delay_s: float | None = None,
                    eta: float | None = None, priority: int | None = None,
                    max_retries: int | None = None, timeout_s: float | None = None,
                    idempotency_key: str | None = None) -> str:
        """Submit with options (``None`` = the kind's or the server's default)."""
        opts = _options(delay_s, eta, priority, max_retries, timeout_s, idempotency_key)
        return str(self._send(_submit_req(_body(kind, args, kwargs, opts)))["id"])

    def submit_many(self, bodies: Iterable[Mapping[str, Any]]) -> list[str]:
        """Submit several tasks at once, all or nothing; their ids in order."""
        return [str(r["id"]) for r in self._send(_batch_req(bodies))["tasks"]]

    def get(self, task_id: str) -> dict[str, Any]:
        """The task's record. Raises ``NotFound``."""
        record: dict[str, Any] = self._send(_Req("GET", _task_path(task_id)))
        return record

    def wait(self, task_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """The record once the task has finished; ``WaitTimeout`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        record: dict[str, Any] | None = None
        while (req := self._next_poll(task_id, timeout_s, deadline, record)) is not None:
            record = self._send(req)
        assert record is not None
        return record

    def cancel(self, task_id: str, *, force: bool = False) -> dict[str, Any]:
        """Cancel a pending task (a running one only with ``force``). Raises
        ``Conflict`` if it already ended, ``NotFound``."""
        params = {"force": "true"} if force else None
        record: dict[str, Any] = self._send(_Req("DELETE", _task_path(task_id), params))
        return record

    def list_tasks(self, *, status: str | None = None, kind: str | None = None,
                   limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """A page ``{"tasks": [record...], "next_cursor"}``, newest first."""
        page: dict[str, Any] = self._send(_list_req(status, kind, limit, cursor))
        return page

    def retry(self, task_id: str) -> dict[str, Any]:
        """Run a failed or cancelled task again (same id, attempts reset); its
        record. Raises ``Conflict`` if it has not ended or succeeded, ``NotFound``."""
        record: dict[str, Any] = self._send(_Req("POST", _task_path(task_id) + "/retry"))
        return record

    def retry_failed(self, *, kind: str | None = None, finished_after: float | None = None,
                     finished_before: float | None = None, limit: int | None = None
                     ) -> dict[str, Any]:
        """Run failed tasks again (oldest first, up to ``limit``); ``{"retried", "ids"}``."""
        out: dict[str, Any] = self._send(_retry_failed_req(kind, finished_after,
                                                           finished_before, limit))
        return out

    def stats(self) -> dict[str, Any]:
        """``GET /queue/stats``: counts, queue depth, oldest due wait, executors."""
        out: dict[str, Any] = self._send(_Req("GET", "/queue/stats"))
        return out

    def schedules(self) -> list[dict[str, Any]]:
        """``GET /schedules``: each periodic task, its next slot, its last slot and run."""
        out: list[dict[str, Any]] = self._send(_Req("GET", "/schedules"))["schedules"]
        return out

    def health(self, *, ready: bool = False) -> dict[str, Any]:
        """``/healthz`` (or ``/readyz`` with ``ready``); ``Unavailable`` if not so."""
        out: dict[str, Any] = self._send(_Req("GET", "/readyz" if ready else "/healthz"))
        return out

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncClient(_Endpoint):
    """``Client`` for asyncio: the same constructor and methods, as coroutines."""

    def __init__(self, base_url: str, token: str | None = None, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S, long_poll_s: float = LONG_POLL_S,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, timeout_s, long_poll_s)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=_headers(token),
                                       timeout=timeout_s, transport=transport)

    async def _send(self, req: _Req) -> Any:
        if divert.handler is not None:  # a test mode of executor.testing is on
            return await asyncio.get_running_loop().run_in_executor(None, _in_process, req)
        try:
            resp = await self._http.request(req.method, req.path, params=req.params,
                                            content=req.body,
                                            timeout=req.timeout_s or self.timeout_s)
        except httpx.HTTPError as exc:
            raise _unreachable(exc, self.base_url) from exc
        return _result(resp)

    async def submit(self, kind: str, /, *args: Any, **kwargs: Any) -> str:
        """Submit ``kind(*args, **kwargs)``; the task's id once it is stored."""
        return str((await self._send(_submit_req(_body(kind, args, kwargs, {}))))["id"])

    async def submit_with(self, kind: str, args: Sequence[Any] = (),
                          kwargs: Mapping[str, Any] | None = None, *,
                          delay_s: float | None = None, eta: float | None = None,
                          priority: int | None = None, max_retries: int | None = None,
                          timeout_s: float | None = None,
                          idempotency_key: str | None = None) -> str:
        """Submit with options (``None`` = the kind's or the server's default)."""
        opts = _options(delay_s, eta, priority, max_retries, timeout_s, idempotency_key)
        return str((await self._send(_submit_req(_body(kind, args, kwargs, opts))))["id"])

    async def submit_many(self, bodies: Iterable[Mapping[str, Any]]) -> list[str]:
        """Submit several tasks at once, all or nothing; their ids in order."""
        return [str(r["id"]) for r in (await self._send(_batch_req(bodies)))["tasks"]]

    async def get(self, task_id: str) -> dict[str, Any]:
        """The task's record. Raises ``NotFound``."""
        record: dict[str, Any] = await self._send(_Req("GET", _task_path(task_id)))
        return record

    async def wait(self, task_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """The record once the task has finished; ``WaitTimeout`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        record: dict[str, Any] | None = None
        while (req := self._next_poll(task_id, timeout_s, deadline, record)) is not None:
            record = await self._send(req)
        assert record is not None
        return record

    async def cancel(self, task_id: str, *, force: bool = False) -> dict[str, Any]:
        """Cancel a pending task (a running one only with ``force``). Raises
        ``Conflict`` if it already ended, ``NotFound``."""
        params = {"force": "true"} if force else None
        record: dict[str, Any] = await self._send(_Req("DELETE", _task_path(task_id), params))
        return record

    async def list_tasks(self, *, status: str | None = None, kind: str | None = None,
                         limit: int | None = None, cursor: str | None = None
                         ) -> dict[str, Any]:
        """A page ``{"tasks": [record...], "next_cursor"}``, newest first."""
        page: dict[str, Any] = await self._send(_list_req(status, kind, limit, cursor))
        return page

    async def retry(self, task_id: str) -> dict[str, Any]:
        """Run a failed or cancelled task again (same id, attempts reset); its record."""
        record: dict[str, Any] = await self._send(_Req("POST", _task_path(task_id) + "/retry"))
        return record

    async def retry_failed(self, *, kind: str | None = None,
                           finished_after: float | None = None,
                           finished_before: float | None = None, limit: int | None = None
                           ) -> dict[str, Any]:
        """Run failed tasks again (oldest first, up to ``limit``); ``{"retried", "ids"}``."""
        out: dict[str, Any] = await self._send(_retry_failed_req(kind, finished_after,
                                                                 finished_before, limit))
        return out

    async def stats(self) -> dict[str, Any]:
        """``GET /queue/stats``: counts, queue depth, oldest due wait, executors."""
        out: dict[str, Any] = await self._send(_Req("GET", "/queue/stats"))
        return out

    async def schedules(self) -> list[dict[str, Any]]:
        """``GET /schedules``: each periodic task, its next slot, its last slot and run."""
        out: list[dict[str, Any]] = (await self._send(_Req("GET", "/schedules")))["schedules"]
        return out

    async def health(self, *, ready: bool = False) -> dict[str, Any]:
        """``/healthz`` (or ``/readyz`` with ``ready``); ``Unavailable`` if not so."""
        out: dict[str, Any] = await self._send(_Req("GET", "/readyz" if ready else "/healthz"))
        return out

    async def close(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
