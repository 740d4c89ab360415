"""FastAPI's own test of its background-tasks tutorial (tests/test_tutorial/
test_background_tasks/test_tutorial002.py in FastAPI), copied unchanged into
``tutorial_test``, passes against the app with offload:

- with ``OffloadTasks`` in the app, inside ``inline()``;
- with the unedited app plus ``server.fastapi.install(app)``, inside ``inline()``;
- with either, inside ``fake()``, once ``run_all()`` ran the recorded calls;

and fails without a test mode (no pool: the calls never run), which shows the
test checks something.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from executor.client import shared
from executor.testing import Fake, fake, inline
from server.fastapi import install
from tests.support import tutorial_apps


def tutorial_test(client: TestClient) -> None:
    # FastAPI's test, verbatim.
    log = Path("log.txt")
    if log.is_file():
        os.remove(log)  # pragma: no cover
    response = client.post("/send-notification/foo@example.com?q=some-query")
    assert response.status_code == 200, response.text
    assert response.json() == {"message": "Message sent"}
    with open("./log.txt") as f:
        assert "found query: some-query\nmessage to foo@example.com" in f.read()


def _installed() -> FastAPI:
    app = tutorial_apps.make_plain_app()
    install(app)
    return app


APPS: dict[str, Callable[[], FastAPI]] = {
    "OffloadTasks": lambda: tutorial_apps.offload_app,
    "install": _installed,
}


@pytest.fixture(params=list(APPS))
def client(request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.chdir(tmp_path)  # log.txt is relative to the working directory
    return TestClient(APPS[request.param]())


def test_plain_fastapi_passes_its_own_test(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    tutorial_test(TestClient(tutorial_apps.make_plain_app()))


@inline()
def test_tutorial_inside_inline(client: TestClient) -> None:
    tutorial_test(client)


def test_tutorial_with_the_inline_fixture(client: TestClient, offload_inline: object) -> None:
    tutorial_test(client)


def test_tutorial_inside_fake_after_run_all(client: TestClient, offload_fake: Fake) -> None:
    response = client.post("/send-notification/foo@example.com?q=some-query")
    assert response.status_code == 200, response.text
    assert not Path("log.txt").exists()  # recorded, not run
    assert [(c.kind, c.args, c.fn) for c in offload_fake.calls] == [
        ("tests.support.tutorial_apps.write_log", ["found query: some-query\n"],
         tutorial_apps.write_log),
        ("tests.support.tutorial_apps.write_log", ["message to foo@example.com\n"],
         tutorial_apps.write_log)]
    assert offload_fake.calls[0].group_id == offload_fake.calls[1].group_id
    offload_fake.run_all()
    with open("./log.txt") as f:
        assert "found query: some-query\nmessage to foo@example.com" in f.read()


def test_without_a_test_mode_the_calls_never_run(client: TestClient) -> None:
    # No pool runs in this test: the calls wait in the outbox, and the
    # tutorial's assertion on log.txt fails (as the issue found).
    try:
        with pytest.raises(FileNotFoundError):
            tutorial_test(client)
    finally:
        shared._outboxes.clear()  # the calls are lost on purpose: no error at exit


def test_fake_as_a_context_manager(client: TestClient) -> None:
    with fake() as offload:
        client.post("/send-notification/foo@example.com")
    assert [c.args for c in offload.calls] == [["message to foo@example.com\n"]]
