"""Test modes for apps that use offload: hand-offs without a pool.

::

    from executor.testing import inline, fake

    def test_signup(client):                      # Starlette's / FastAPI's TestClient
        with inline():                            # the calls run at hand-off, here
            client.post("/register", json={"email": "ada@example.com"})
        assert outbox_has("ada@example.com")

    def test_signup_queues_the_email(client):
        with fake() as offload:                   # the calls are recorded
            client.post("/register", json={"email": "ada@example.com"})
        assert [c.kind for c in offload.calls] == ["send_email", "app.audit"]
        assert offload.calls[0].args == ["ada@example.com", "Welcome!"]
        offload.run_all()                         # and run when the test says so

Both also decorate a test function (``@inline()``), and pytest gets the
fixtures ``offload_inline`` and ``offload_fake`` (``executor.testing.pytest_plugin``,
registered by offload's ``pytest11`` entry point). ``server.Client`` is
answered by the mode too (``server.inprocess``).

Modules: ``modes`` (the two modes), ``calls`` (a call, taken and run as the
pool and an executor would), ``threads`` (where calls run),
``pytest_plugin`` (the fixtures).

Public names: ``inline``, ``fake`` (``modes``), ``Inline``, ``Fake``,
``Call`` (``calls``).
"""

from executor.testing.calls import Call
from executor.testing.modes import Fake, Inline, fake, inline

__all__ = ["Call", "Fake", "Inline", "fake", "inline"]
