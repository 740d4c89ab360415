"""Which edits a live reload (HUP) applies, and which need a restart."""

from __future__ import annotations

import dataclasses

import pytest

from config import RESTART_ONLY, ConfigError, Settings, check_reloadable

PG = "postgresql://offload:secret@db.internal:5432/offload"


def test_tuning_edits_are_reloadable() -> None:
    running = Settings(store_url=PG)
    check_reloadable(running, dataclasses.replace(running, executors=7, workers=3,
                                                  lease_s=12.0, log_level="debug"))


@pytest.mark.parametrize(("key", "value"), [("store_url", PG + "2"), ("run_dir", "/srv/run")])
def test_a_store_or_run_dir_edit_names_the_key_and_says_restart(key: str, value: str) -> None:
    assert key in RESTART_ONLY
    running = Settings(store_url=PG)
    with pytest.raises(ConfigError, match=rf"key '{key}' changed.*restart the server"):
        check_reloadable(running, dataclasses.replace(running, **{key: value}))


def test_bind_names_the_run_dir_only_where_it_moves_it() -> None:
    shared = Settings(store_url=PG, bind="127.0.0.1:8000")
    with pytest.raises(ConfigError, match="key 'bind' changed"):
        check_reloadable(shared, dataclasses.replace(shared, bind="127.0.0.1:9000"))
    # with run_dir set, or on SQLite, the socket stays where it is: gunicorn rebinds live
    pinned = dataclasses.replace(shared, run_dir="/srv/run")
    check_reloadable(pinned, dataclasses.replace(pinned, bind="127.0.0.1:9000"))
    local = Settings(bind="127.0.0.1:8000")
    check_reloadable(local, dataclasses.replace(local, bind="127.0.0.1:9000"))


def test_the_message_never_shows_the_password() -> None:
    running = Settings(store_url=PG)
    with pytest.raises(ConfigError) as info:
        check_reloadable(running, dataclasses.replace(running, store_url=PG.replace("secret",
                                                                                     "new")))
    assert "secret" not in str(info.value) and ":new@" not in str(info.value)
