"""A server reachable beyond this host without a token is warned about at start."""

from __future__ import annotations

import pytest

from config.settings import Settings
from server.supervision import open_api_warning


@pytest.mark.parametrize("bind", ["0.0.0.0:8000", "10.1.2.3:80", "[::]:8000", "example.org:8000"])
def test_a_public_bind_without_a_token_is_warned(bind: str) -> None:
    warning = open_api_warning(Settings(bind=bind))
    assert warning is not None and bind in warning and "auth_token" in warning


@pytest.mark.parametrize("bind", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000",
                                  "unix:/run/offload/http.sock"])
def test_a_local_bind_is_not(bind: str) -> None:
    assert open_api_warning(Settings(bind=bind)) is None


def test_a_token_silences_it() -> None:
    assert open_api_warning(Settings(bind="0.0.0.0:8000", auth_token="t" * 32)) is None
