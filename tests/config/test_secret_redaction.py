"""Config errors go to logs: they never show the auth token's value."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import ConfigError, load_settings


def test_a_bad_auth_token_in_the_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = tmp_path / "offload.toml"
    path.write_text('auth_token = ["my-real-secret-token"]\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    assert "auth_token" in str(err.value) and str(path) in str(err.value)
    assert "my-real-secret-token" not in str(err.value)
    assert "(a list, not shown)" in str(err.value)


def test_other_keys_still_show_the_bad_value(tmp_path: Path) -> None:
    path = tmp_path / "offload.toml"
    path.write_text('executors = "many"\n')
    with pytest.raises(ConfigError, match="key 'executors' has value 'many'"):
        load_settings(path, environ={})
