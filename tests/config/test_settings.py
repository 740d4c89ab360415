"""Settings: declared once, loaded from offload.toml and OFFLOAD_*, refused loudly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from config import ConfigError, Settings, load_settings, run_dir_for, socket_path_for


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "offload.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path: Path) -> None:
    s = load_settings(None, environ={"OFFLOAD_CONFIG": str(write(tmp_path, ""))})
    assert s == Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.executors = 3  # type: ignore[misc]


def test_file_then_environment_precedence(tmp_path: Path) -> None:
    path = write(tmp_path, 'executors = 3\nworkers = 4\ntask_modules = ["a.tasks"]\n')
    s = load_settings(path, environ={"OFFLOAD_EXECUTORS": "5",
                                     "OFFLOAD_TASK_MODULES": "app.tasks, app.reports"})
    assert (s.executors, s.workers) == (5, 4)
    assert s.task_modules == ["app.tasks", "app.reports"]


def test_unknown_key_names_the_file_and_lists_accepted_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "executers = 3\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    assert str(path) in str(err.value) and "'executers'" in str(err.value)
    assert "executors" in str(err.value)


@pytest.mark.parametrize(("line", "accepted"), [
    ('executors = "many"', "an integer >= 1"),
    ("executors = 0", "an integer >= 1"),
    ("default_timeout_s = -1", "a number from 0.001 to 604800"),
    ('worker_class = "sync"', "one of: asgi, uvicorn_worker.UvicornWorker"),
    ('task_modules = "app.tasks"', "a list of strings"),
    ("workers = true", "an integer"),
])
def test_bad_values_name_file_key_value_and_accepted(tmp_path: Path, line: str,
                                                     accepted: str) -> None:
    path = write(tmp_path, line + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    key = line.split(" = ")[0]
    message = str(err.value)
    assert str(path) in message and f"'{key}'" in message and accepted in message


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"OFFLOAD_WORKERS .*'lots'.*an integer"):
        load_settings(write(tmp_path, ""), environ={"OFFLOAD_WORKERS": "lots"})


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_number_setting_must_be_finite(tmp_path: Path, value: str) -> None:
    # nan compares false with every bound, so it used to pass "a number > 0".
    with pytest.raises(ConfigError, match=rf"OFFLOAD_DEFAULT_TIMEOUT_S .*'{value}'.*a number"):
        load_settings(write(tmp_path, ""), environ={"OFFLOAD_DEFAULT_TIMEOUT_S": value})
    with pytest.raises(ConfigError, match=r"offload.toml: key 'kill_grace_s' has value nan"):
        load_settings(write(tmp_path, "kill_grace_s = nan\n"), environ={})


def test_store_url_and_broken_toml_and_missing_explicit_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'store_url = "mysql://u:hunter2@x/db"\n')
    with pytest.raises(ConfigError, match=rf"^{path}: key 'store_url' has value "
                                          r"'mysql://u:\*\*\*@x/db'; accepted: sqlite:///"):
        load_settings(path, environ={})  # the password is not shown
    # From the environment, the variable is named, not the file.
    with pytest.raises(ConfigError, match=r"^environment variable OFFLOAD_STORE_URL \(key "
                                          r"'store_url'\) has value 'redis://x'; accepted"):
        load_settings(path, environ={"OFFLOAD_STORE_URL": "redis://x"})
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_settings(write(tmp_path, "executors = \n"), environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(None, environ={"OFFLOAD_CONFIG": str(tmp_path / "nope.toml")})


def test_postgresql_store_urls_and_lease_s(tmp_path: Path) -> None:
    url = "postgresql://offload:pw@db:5432/queue?sslmode=require"
    settings = load_settings(write(tmp_path, f'store_url = "{url}"\nlease_s = 2.5\n'),
                             environ={})
    assert settings.store_url == url and settings.shared_store and settings.lease_s == 2.5
    assert load_settings(None, environ={}).lease_s == 30.0
    assert load_settings(None, environ={"OFFLOAD_LEASE_S": "12"}).lease_s == 12.0
    with pytest.raises(ConfigError, match=r"key 'lease_s' has value 0.1; accepted: a number "
                                          r"from 0.5 to 3600"):
        load_settings(write(tmp_path, "lease_s = 0.1\n"), environ={})


def test_pools_sharing_a_postgresql_store_on_one_host_get_their_own_run_dirs(
        tmp_path: Path) -> None:
    url = "postgresql://offload:secret@db/queue"
    a = load_settings(None, environ={"OFFLOAD_STORE_URL": url, "OFFLOAD_BIND": "127.0.0.1:8001"})
    b = load_settings(None, environ={"OFFLOAD_STORE_URL": url, "OFFLOAD_BIND": "127.0.0.1:8002"})
    a_again = load_settings(None, environ={"OFFLOAD_STORE_URL": url,
                                           "OFFLOAD_BIND": "127.0.0.1:8001"})
    assert run_dir_for(a) != run_dir_for(b)
    assert run_dir_for(a) == run_dir_for(a_again)  # every process of one server agrees


def test_run_dir_is_private_per_store(tmp_path: Path) -> None:
    a = load_settings(write(tmp_path, 'store_url = "sqlite:///a.db"\n'), environ={})
    b = load_settings(write(tmp_path, 'store_url = "sqlite:///b.db"\n'), environ={})
    assert run_dir_for(a) != run_dir_for(b)
    assert socket_path_for(a).startswith(run_dir_for(a))
    c = load_settings(write(tmp_path, f'run_dir = "{tmp_path}/run"\n'), environ={})
    assert run_dir_for(c) == f"{tmp_path}/run"


def test_a_misspelt_variable_is_named_in_a_warning(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="offload.config"):
        settings = load_settings(write(tmp_path, ""), environ={
            "OFFLOAD_EXECUTOR": "5", "OFFLOAD_APP_SECRET": "x", "OFFLOAD_WORKERS": "3"})
    assert settings.workers == 3 and settings.executors == 2
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["environment variable OFFLOAD_EXECUTOR is not an offload setting and "
                        "is ignored; did you mean OFFLOAD_EXECUTORS?"]


def test_max_result_bytes_must_fit_in_half_a_frame(tmp_path: Path) -> None:
    defaults = Settings()
    assert defaults.max_result_bytes <= defaults.max_frame_bytes // 2
    path = write(tmp_path, "max_frame_bytes = 1048576\nmax_result_bytes = 524288\n")
    assert load_settings(path, environ={}).max_result_bytes == 524288  # exactly half: fine
    path = write(tmp_path, "max_frame_bytes = 1048576\nmax_result_bytes = 524289\n")
    with pytest.raises(ConfigError, match=rf"^{path}: key 'max_result_bytes' has value 524289; "
                                          r"accepted: an integer from 64 to 524288 \(half of "
                                          r"max_frame_bytes = 1048576"):
        load_settings(path, environ={})
    with pytest.raises(ConfigError, match=r"^environment variable OFFLOAD_MAX_RESULT_BYTES "
                                          r"\(key 'max_result_bytes'\) has value 600000; "
                                          r"accepted: an integer from 64 to 524288"):
        load_settings(write(tmp_path, "max_frame_bytes = 1048576\n"),
                      environ={"OFFLOAD_MAX_RESULT_BYTES": "600000"})
    # Only the frame limit was set: it is the one named, with what it must be.
    path = write(tmp_path, "max_frame_bytes = 1048576\n")
    with pytest.raises(ConfigError, match=rf"^{path}: key 'max_frame_bytes' has value 1048576; "
                                          r"accepted: an integer >= 2097152 \(twice "
                                          r"max_result_bytes = 1048576"):
        load_settings(path, environ={})


@pytest.mark.parametrize(("key", "value"), [("long_poll_max_s", "3601"),
                                            ("default_timeout_s", "1e308")])
def test_bounded_numbers_have_an_upper_bound(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"OFFLOAD_{key.upper()} .*accepted: a number from"):
        load_settings(write(tmp_path, ""), environ={f"OFFLOAD_{key.upper()}": value})


def test_concurrency_and_autoscaling_settings(tmp_path: Path) -> None:
    s = Settings()
    assert (s.executors, s.executors_max, s.async_concurrency) == (2, 32, 100)
    path = write(tmp_path, "executors_max = 8\nasync_concurrency = 20\n")
    s = load_settings(path, environ={"OFFLOAD_EXECUTOR_IDLE_S": "2.5"})
    assert (s.executors_max, s.async_concurrency, s.executor_idle_s) == (8, 20, 2.5)
    with pytest.raises(ConfigError, match=r"key 'async_concurrency' has value 0; accepted: "
                                          r"an integer >= 1"):
        load_settings(write(tmp_path, "async_concurrency = 0\n"), environ={})
