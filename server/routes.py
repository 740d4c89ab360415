"""offload's route handlers: each turns a ``Request`` into a ``Response``.

Handlers raise ``ApiError`` for every refusal (the app turns it into the
JSON error answer) and never send anything themselves. A submit is answered
only after the pool replied, and the pool replies only after the durable
commit, so a ``202`` always means "stored".
"""

from __future__ import annotations

import asyncio
import time
from importlib import metadata, resources
from typing import Any

from config.settings import Settings
from metrics import pool_down_exposition
from server import openapi, records, validate
from server.errors import ApiError, invalid
from server.http import (
    BodyDeadlines,
    ClientDisconnected,
    Receive,
    Request,
    Response,
    json_response,
    read_json,
)
from server.pool import PoolLink

# The pool renders the classic text format (every offload name is a legacy-valid
# Prometheus name), so 0.0.4 is what the body is.
METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_HEALTHZ = json_response(200, {"status": "ok"})
# Slack past ``wait`` before a long poll gives up on the pool.
LONG_POLL_SLACK_S = 5.0
_DOCS_CSP = (b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
             b"connect-src 'self'")  # the page's own inline code, and openapi.json
PROBE_TIMEOUT_S = 2.0
"""How long ``/readyz`` and ``/metrics`` wait for the pool: a hung pool must
read as not ready (and ``offload_pool_up 0``) while probes and scrapes still
wait, not after ``http_timeout_s``."""


class Routes:
    """The handlers of offload's HTTP API (see DESIGN.md, "HTTP API")."""

    def __init__(self, settings: Settings, link: PoolLink) -> None:
        self.link = link
        self.max_body_bytes = settings.max_body_bytes
        self.body_deadlines = BodyDeadlines(settings.http_timeout_s)
        self.long_poll_max_s = settings.long_poll_max_s
        self._pool_down = pool_down_exposition()  # built once: it never changes
        self._openapi = json_response(200, openapi.document(settings.long_poll_max_s,
                                                            version()))
        page = resources.files("server").joinpath("docs/index.html").read_bytes()
        self._docs: Response = (200, [(b"content-type", b"text/html; charset=utf-8"),
                                      (b"content-length", b"%d" % len(page)),
                                      (b"content-security-policy", _DOCS_CSP)], page)

    async def _raw(self, req: Request) -> bytes:
        """The request's JSON body as bytes, within the size limit (415, 413, 408)."""
        return await read_json(req, self.max_body_bytes, self.body_deadlines)

    async def submit(self, req: Request) -> Response:
        """``POST /tasks``: 202, ``Location`` and the record, once stored."""
        spec = validate.submit_body(await self._raw(req), time.time())
        if req.idempotency_key is not None:
            key = validate.idempotency_key(req.idempotency_key, "Idempotency-Key")
            if spec.get("idempotency_key", key) != key:
                raise invalid("idempotency_key", "the Idempotency-Key header and the "
                                       "idempotency_key field differ; send one of them")
            spec["idempotency_key"] = key
        result = await self.link.call("submit", {"tasks": [spec]}, field_prefix="tasks[0].")
        wire = result["tasks"][0]
        location = (req.scope.get("root_path", "") + "/tasks/" + wire["id"]).encode()
        return json_response(202, records.to_json(wire), [(b"location", location)])

    async def submit_batch(self, req: Request) -> Response:
        """``POST /tasks/batch``: 202 and every record, all or nothing."""
        specs = validate.batch_body(await self._raw(req), time.time())
        if req.idempotency_key is not None:
            # A retried batch is the same batch: each task without its own key
            # gets the header's, numbered, so it is stored once.
            key = validate.idempotency_key(req.idempotency_key, "Idempotency-Key")
            for i, item in enumerate(specs):
                item.setdefault("idempotency_key", f"{key}#{i}")
        result = await self.link.call("submit", {"tasks": specs})
        return json_response(202, {"tasks": [records.to_json(w) for w in result["tasks"]]})

    async def get_task(self, req: Request) -> Response:
        """``GET /tasks/{id}[?wait=S]``: the record; ``Retry-After`` while unfinished."""
        wait_s = validate.wait_s(req.query(), self.long_poll_max_s)
        if wait_s:
            wire = await self._long_poll(req, wait_s)
        else:
            wire = await self.link.call("get", {"id": req.task_id})
        retry_s = records.retry_after_s(wire, time.time())
        headers = None if retry_s is None else [(b"retry-after", b"%d" % retry_s)]
        return json_response(200, records.to_json(wire), headers)

    async def _long_poll(self, req: Request, wait_s: float) -> Any:
        # Watch for the client leaving, so an abandoned long poll frees its
        # coroutine at once instead of after ``wait`` seconds.
        call = asyncio.ensure_future(self.link.call(
            "get", {"id": req.task_id, "wait_s": wait_s}, timeout_s=wait_s + LONG_POLL_SLACK_S))
        watch = asyncio.ensure_future(_disconnected(req.receive))
        try:
            await asyncio.wait((call, watch), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            call.cancel()
            raise
        finally:
            watch.cancel()
        if not call.done():
            call.cancel()
            raise ClientDisconnected
        return call.result()

    async def list_tasks(self, req: Request) -> Response:
        """``GET /tasks?status=&kind=&limit=&cursor=``: a page, newest first."""
        args = validate.list_args(req.query())
        result = await self.link.call("list", args)
        return json_response(200, {"tasks": [records.to_json(w) for w in result["tasks"]],
                                   "next_cursor": result.get("next_cursor")})

    async def cancel_task(self, req: Request) -> Response:
        """``DELETE /tasks/{id}[?force=true]``: the cancelled record; 409 if it ran."""
        force = validate.force(req.query())
        wire = await self.link.call("cancel", {"id": req.task_id, "force": force, "by": "http"})
        return json_response(200, records.to_json(wire))

    async def retry_task(self, req: Request) -> Response:
        """``POST /tasks/{id}/retry``: 202 and the record, pending again with its
        attempts reset; 409 if the task has not ended or it succeeded."""
        validate.no_query(req.query())
        wire = await self.link.call("retry", {"id": req.task_id})
        location = (req.scope.get("root_path", "") + "/tasks/" + wire["id"]).encode()
        return json_response(202, records.to_json(wire), [(b"location", location)])

    async def retry_failed(self, req: Request) -> Response:
        """``POST /tasks/retry``: 202 and ``{"retried", "ids"}``, the failed tasks
        matching the body's filter put back to run (at most its ``limit``)."""
        args = validate.retry_filter(await self._raw(req))
        result = await self.link.call("retry_failed", args)
        return json_response(202, {"retried": len(result["ids"]), "ids": result["ids"]})

    async def openapi(self, req: Request) -> Response:
        """``GET /openapi.json``: the API's OpenAPI 3.1 document (``server.openapi``)."""
        return self._openapi

    async def docs(self, req: Request) -> Response:
        """``GET /docs``: a page rendering the document, with no outside assets."""
        return self._docs

    async def queue_stats(self, req: Request) -> Response:
        """``GET /queue/stats``: the pool's counts, queue depth, oldest due wait and executors."""
        return json_response(200, await self.link.call("stats"))

    async def schedules(self, req: Request) -> Response:
        """``GET /schedules``: each schedule, its next slot, its last slot and run."""
        return json_response(200, await self.link.call("schedules"))

    async def metrics(self, req: Request) -> Response:
        """``GET /metrics``: Prometheus text; ``offload_pool_up 0`` if the pool is away."""
        try:
            text: bytes | str = (await self.link.call("metrics", timeout_s=PROBE_TIMEOUT_S))[
                "text"]
        except ApiError as exc:
            if exc.status != 503:
                raise
            text = self._pool_down
        body = text.encode() if isinstance(text, str) else text
        return 200, [(b"content-type", METRICS_TYPE),
                     (b"content-length", b"%d" % len(body))], body

    async def healthz(self, req: Request) -> Response:
        """``GET /healthz``: always 200 while the worker serves; touches nothing."""
        return _HEALTHZ

    async def readyz(self, req: Request) -> Response:
        """``GET /readyz``: 200 when the pool answers and an executor is up, else 503."""
        health = await self.link.call("health", timeout_s=PROBE_TIMEOUT_S)
        if health.get("executors_up", 0) >= 1:
            return json_response(200, {"status": "ready", **health})
        raise ApiError(503, "not_ready",
                       f"no executor is up yet ({health.get('executors_up', 0)} of "
                       f"{health.get('executors_wanted', '?')} wanted)", None,
                       [(b"retry-after", b"1")])


def version() -> str:
    """offload's installed version (``0+unknown`` when not installed)."""
    try:
        return metadata.version("offload")
    except metadata.PackageNotFoundError:
        return "0+unknown"


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
