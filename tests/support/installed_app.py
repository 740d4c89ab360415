"""FastAPI's background-tasks tutorial app (``tutorial_apps.make_plain_app``:
a dependency and the route each add a call, with plain
``fastapi.BackgroundTasks``) and one line more: ``install(app)``. Served by
offload's gunicorn in tests/integration/test_fastapi_install.py (``app =
"tests.support.installed_app:app"``); its ``write_log`` calls (kind
``tests.support.tutorial_apps.write_log``) append to ``log.txt`` in
``$OFFLOAD_TEST_DIR``, the test's trace directory.
"""

from __future__ import annotations

from server.fastapi import install
from tests.support.tutorial_apps import make_plain_app

app = make_plain_app()
install(app)
