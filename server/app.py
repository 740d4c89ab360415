"""offload's ASGI application: routing, auth, error answers and lifespan.

A raw ASGI 3 app with no framework under it: a route is found with one dict
look-up (plus one prefix test for ``/tasks/{id}``), handlers are methods of
``server.routes.Routes``, and every response is built in full before the
first byte is sent, so any error can still become a JSON answer.

Paths that are not offload's routes go to the user's app when one is mounted
(``mount(app)``, or the ``app`` setting). **The user's routes are not
protected by offload's bearer token**: they keep whatever auth the user app
has. Their requests are not counted in offload's HTTP metrics either.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from urllib.parse import unquote

from config.settings import ConfigError, Settings, load_settings
from executor.wire.registry import import_object
from metrics import HttpObservations
from server import lifespan
from server.errors import ApiError
from server.http import (
    ASGIApp,
    ClientDisconnected,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    error_response,
    send_response,
)
from server.lifeline import RequestGate
from server.pool import PoolLink
from server.routes import Routes
from server.supervision import supervision

log = logging.getLogger("offload.server")

Handler = Callable[[Request], Awaitable[Response]]

_TASKS_PREFIX = "/tasks/"
# Methods outside this set are counted as "other", so clients cannot blow up
# the metrics' label cardinality with made-up methods.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_INTERNAL = error_response(ApiError(500, "internal", "internal server error; see the server log"))
_NOT_FOUND = error_response(ApiError(404, "not_found", "no such route"))
_RESTARTING = error_response(ApiError(
    503, "restarting", "this server is restarting and takes no more requests; send the "
    "request again", None, [(b"retry-after", b"1")]))
_READS = frozenset({"GET", "HEAD"})  # offload's reads hand off no background call
_UNAUTHORIZED = error_response(ApiError(
    401, "unauthorized", "a bearer token is required: send 'Authorization: Bearer <token>'",
    None, [(b"www-authenticate", b"Bearer")]))
_WRONG_TOKEN = error_response(ApiError(
    401, "unauthorized", "the bearer token is not this server's (auth_token); check the "
    "token you send", "Authorization", [(b"www-authenticate", b'Bearer error="invalid_token"')]))


class _Route:
    """One route template: its handlers by method and whether it needs the token."""

    __slots__ = ("allow", "handlers", "public", "template")

    def __init__(self, template: str, handlers: dict[str, Handler], public: bool = False) -> None:
        self.template = template
        self.handlers = handlers
        self.public = public
        methods = sorted({*handlers, "HEAD"} if "GET" in handlers else handlers)
        self.allow = ", ".join(methods).encode()


class OffloadApp:
    """The ASGI app ``create_app`` returns. One per process; it holds the
    worker's pool link (made lazily in the running loop).

    With a ``gate`` (set by ``create_worker_app``: an HTTP worker under
    offload's gunicorn config), every request that may hand off background
    calls (all but offload's reads) is counted in it, and once it is closed
    (the master is gone, ``server.lifeline``) every request is answered
    ``503 restarting`` with ``Retry-After: 1``."""

    def __init__(self, settings: Settings, user_app: ASGIApp | None) -> None:
        self.settings = settings
        self.user_app = user_app
        self.gate: RequestGate | None = None
        self.observations = HttpObservations()
        self.link = PoolLink(settings, self.observations)
        r = Routes(settings, self.link)
        self._token = settings.auth_token.encode() if settings.auth_token else None
        self._exact = {
            "/tasks": _Route("/tasks", {"GET": r.list_tasks, "POST": r.submit}),
            "/tasks/batch": _Route("/tasks/batch", {"POST": r.submit_batch}),
            "/queue/stats": _Route("/queue/stats", {"GET": r.queue_stats}),
            "/schedules": _Route("/schedules", {"GET": r.schedules}),
            "/metrics": _Route("/metrics", {"GET": r.metrics}),
            "/healthz": _Route("/healthz", {"GET": r.healthz}, public=True),
            "/readyz": _Route("/readyz", {"GET": r.readyz}),
            "/tasks/retry": _Route("/tasks/retry", {"POST": r.retry_failed}),
            "/openapi.json": _Route("/openapi.json", {"GET": r.openapi}, public=True),
            "/docs": _Route("/docs", {"GET": r.docs}, public=True),
        }
        self._task = _Route("/tasks/{id}", {"GET": r.get_task, "DELETE": r.cancel_task})
        self._retry = _Route("/tasks/{id}/retry", {"POST": r.retry_task})

    def routes(self) -> dict[str, frozenset[str]]:
        """Each route template and its methods (HEAD aside): what the OpenAPI
        document must describe, and all it may."""
        return {route.template: frozenset(route.handlers)
                for route in (*self._exact.values(), self._task, self._retry)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            gate = self.gate
            if gate is not None and gate.closed:
                await send_response(send, _RESTARTING, head=scope["method"] == "HEAD")
                return
            route, task_id = self._route(scope)
            if gate is None or (route is not None and scope["method"] in _READS):
                await self._http(route, task_id, scope, receive, send)
                return
            gate.enter()
            try:
                await self._http(route, task_id, scope, receive, send)
            finally:
                gate.leave()
        elif kind == "lifespan":
            await lifespan.run(scope, receive, send, startup=self._startup,
                               shutdown=self.link.stop, user_app=self.user_app)
        elif self.user_app is not None:
            await self.user_app(scope, receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    def _task_route(self, rest: str, raw_path: bytes | None, root_len: int
                    ) -> tuple[_Route | None, str]:
        """The route and task id of ``/tasks/{rest}``: ``{id}`` or ``{id}/retry``.

        The id comes from the raw path when the server gives it, so an id
        holding an encoded slash (``a%2Fretry``) stays one id (a 404), and
        bytes that are not UTF-8 are replaced, never passed on as surrogates.
        """
        start = -1
        if raw_path:
            raw = raw_path.decode("latin-1").partition("?")[0]
            start = raw.find(_TASKS_PREFIX, root_len)
        if start >= 0:
            parts = [unquote(p, errors="replace") for p in raw[start + 7:].split("/")]
        else:
            parts = rest.split("/")
        if len(parts) == 1:
            return self._task, parts[0]
        if len(parts) == 2 and parts[0] and parts[1] == "retry":
            return self._retry, parts[0]
        return None, ""

    def _route(self, scope: Scope) -> tuple[_Route | None, str]:
        """offload's route for the request and the task id in its path, or
        ``(None, "")`` for a path that is not offload's."""
        path: str = scope["path"]
        root = scope.get("root_path")
        if root and path.startswith(root):
            # Mounted under a prefix: ASGI's path carries it (as Starlette's
            # Mount passes it), the routes do not.
            path = path[len(root):]
        route = self._exact.get(path)
        if route is not None:
            return route, ""
        if path.startswith(_TASKS_PREFIX) and len(path) > 7:
            return self._task_route(path[7:], scope.get("raw_path"), len(root or ""))
        return None, ""

    async def _http(self, route: _Route | None, task_id: str, scope: Scope, receive: Receive,
                    send: Send) -> None:
        """Serve one HTTP request: offload's ``route``, else the user app, else 404."""
        if route is not None:
            await self._serve(route, scope, receive, send, task_id)
        elif self.user_app is not None:
            await self.user_app(scope, receive, send)
        else:
            await send_response(send, _NOT_FOUND, head=scope["method"] == "HEAD")

    async def _startup(self) -> None:
        self.link.start()

    async def _serve(self, route: _Route, scope: Scope, receive: Receive, send: Send,
                     task_id: str) -> None:
        started = perf_counter()
        method: str = scope["method"]
        req = Request(scope, receive, method, task_id)
        try:
            if self._token is not None and not route.public and not self._authorized(req):
                response = _UNAUTHORIZED if req.authorization is None else _WRONG_TOKEN
            else:
                handler = route.handlers.get(method)
                if handler is None and method == "HEAD":
                    handler = route.handlers.get("GET")
                if handler is None:
                    raise ApiError(405, "method_not_allowed",
                                   f"{method} is not allowed on {route.template}; "
                                   f"allowed: {route.allow.decode()}",
                                   None, [(b"allow", route.allow)])
                response = await handler(req)
        except ApiError as exc:
            response = error_response(exc)
        except ClientDisconnected:
            return
        except Exception:
            log.exception("unexpected error serving %s %s", method, route.template)
            response = _INTERNAL
        await send_response(send, response, head=method == "HEAD")
        if not route.public:
            self.observations.record(method if method in _METHODS else "other", route.template,
                                     response[0], perf_counter() - started)

    def _authorized(self, req: Request) -> bool:
        header = req.authorization
        if header is None or self._token is None:
            return False
        scheme, _, credentials = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(),
                                                                   self._token)


def import_app(spec: str) -> ASGIApp:
    """Import ``"module:attribute"`` (the ``app`` setting). Raises ``ConfigError``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"key 'app' has value {spec!r}; accepted: module:attribute")
    try:
        obj = import_object(spec)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"key 'app' has value {spec!r}: cannot import it: {exc}") from exc
    if not callable(obj):
        raise ConfigError(f"key 'app' has value {spec!r}: {type(obj).__name__} is not an ASGI app")
    app: ASGIApp = obj
    return app


def create_app(settings: Settings | None = None, *, app: ASGIApp | None = None) -> ASGIApp:
    """offload's ASGI app; with ``app``, that app serves every other path.

    ``settings`` default to ``load_settings()``. Without ``app``, the ``app``
    setting (``"module:attribute"``) is imported if set. Nothing connects to
    the pool until the first request or lifespan startup. Raises
    ``ConfigError`` if settings or the app cannot be loaded.
    """
    if settings is None:
        settings = load_settings()
    if app is None and settings.app:
        app = import_app(settings.app)
    return OffloadApp(settings, app)


def create_worker_app() -> ASGIApp:
    """The app of each HTTP worker under offload's gunicorn config (its ``wsgi_app``).

    Built from the settings the gunicorn master last loaded successfully
    (the worker is forked from the master, so they are in its memory). The
    file is not re-read here: a bad edit on disk, which the master refuses,
    cannot stop a replacement worker from booting. Outside offload's
    gunicorn config this is ``create_app()``. Its requests are counted in
    the worker's gate (``server.lifeline``), which closes when the master
    dies. Raises ``ConfigError`` if the ``app`` setting cannot be imported.
    """
    sup = supervision()
    app = create_app(sup.settings)
    assert isinstance(app, OffloadApp)
    app.gate = sup.gate
    return app


def mount(app: ASGIApp, settings: Settings | None = None) -> ASGIApp:
    """Serve offload's routes in front of ``app`` (``create_app(settings, app=app)``).

    Unmatched paths, websockets and the lifespan go to ``app``; offload's
    bearer token does not protect ``app``'s routes.
    """
    return create_app(settings, app=app)
