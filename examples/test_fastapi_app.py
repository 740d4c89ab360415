"""How to test an app that uses offload, on the FastAPI example: no server, no
pool, FastAPI's TestClient as usual, and offload's pytest fixtures.

    .venv/bin/pytest examples/test_fastapi_app.py

``offload_inline`` runs the background calls as they are handed off (the
email file and the audit line exist when ``client.post`` returns);
``offload_fake`` records them, as an executor would receive them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from examples import fastapi_app, tasks
from executor.testing import Fake, Inline


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setattr(tasks, "OUTBOX", tmp_path / "outbox")
    monkeypatch.setattr(fastapi_app, "AUDIT_LOG", tmp_path / "audit.log")
    return TestClient(fastapi_app.app)


def test_registration_sends_the_email_and_audits(client: TestClient, tmp_path: Path,
                                                 offload_inline: Inline) -> None:
    response = client.post("/register", json={"email": "ada@example.com"})
    assert response.status_code == 201
    (email,) = (tmp_path / "outbox").glob("*.eml")
    assert "To: ada@example.com" in email.read_text()
    audit = json.loads((tmp_path / "audit.log").read_text())
    assert (audit["event"], audit["email"]) == ("signup", "ada@example.com")
    assert [c.status for c in offload_inline.calls] == ["succeeded", "succeeded"]


def test_registration_queues_two_calls(client: TestClient, offload_fake: Fake) -> None:
    client.post("/register", json={"email": "ada@example.com"})
    assert [(c.kind, c.args, c.kwargs) for c in offload_fake.calls] == [
        ("send_email", ["ada@example.com", "Welcome!"], {"body": "Thanks for signing up."}),
        ("examples.fastapi_app.audit", ["signup", "ada@example.com"], {})]


def test_an_invalid_email_queues_nothing(client: TestClient, offload_fake: Fake) -> None:
    assert client.post("/register", json={"email": "not an address"}).status_code == 422
    assert offload_fake.calls == []
