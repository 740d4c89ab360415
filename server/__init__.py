"""offload's HTTP layer: a raw ASGI app serving the task API.

Public names:

- ``create_app(settings=None, *, app=None)``: offload's ASGI app; with
  ``app``, your ASGI app serves every path offload does not.
- ``mount(app, settings=None)``: the same, app first.

Modules: ``app`` (routing, auth, lifespan), ``routes`` (handlers),
``validate`` (request validation), ``records`` (record JSON), ``http``
(body reading, JSON responses), ``pool`` (pool link and metrics shipping),
``lifespan`` (startup/shutdown, shared with a mounted app), ``errors``.
"""

from server.app import create_app, mount

# ``Client`` (the HTTP client of this API) joins this map when it lands.
__all__ = ["create_app", "mount"]
