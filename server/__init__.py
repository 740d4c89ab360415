"""offload's HTTP layer: a raw ASGI app serving the task API.

Public names:

- ``create_app(settings=None, *, app=None)``: offload's ASGI app; with
  ``app``, your ASGI app serves every path offload does not.
- ``mount(app, settings=None)``: the same, app first.
- ``Client``, ``AsyncClient``: the HTTP client of this API (``client``),
  and its errors ``ClientError``, ``InvalidRequest``, ``Unauthorized``,
  ``NotFound``, ``Conflict``, ``Unavailable``, ``WaitTimeout``.
- ``server.fastapi.OffloadTasks`` (imported on its own: it needs FastAPI):
  offload's ``BackgroundTasks`` as a FastAPI dependency;
  ``server.fastapi.install(app)`` gives it to every ``fastapi.BackgroundTasks``
  parameter of an app.

Modules: ``app`` (routing, auth, lifespan), ``routes`` (handlers),
``schemas`` (request and response bodies, declared once), ``validate``
(request validation with them), ``explain`` (their refusals as 422s),
``openapi`` (the OpenAPI document; ``docs/index.html`` renders it at
``/docs``), ``records`` (record JSON), ``cli`` (the ``offload`` command), ``http``
(body reading, JSON responses), ``pool`` (pool link and metrics shipping),
``lifespan`` (startup/shutdown, shared with a mounted app), ``errors``,
``client`` (the HTTP client), ``fastapi`` (the FastAPI dependency and ``install``),
``worker`` (the gunicorn worker class of ``worker_class = "asgi"``: a
deadline on request heads, JSON bodies on gunicorn's own errors),
``lifeline`` (an HTTP worker's side of its master's death).
"""

from server.app import create_app, mount
from server.client import (
    AsyncClient,
    Client,
    ClientError,
    Conflict,
    InvalidRequest,
    NotFound,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "Conflict",
    "InvalidRequest",
    "NotFound",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "create_app",
    "mount",
]
