"""Checking schedules against the registered kinds (executor/pool/schedules.prepare):
what the pool refuses at start and on reload, without processes."""

from __future__ import annotations

from typing import Any

import pytest

from config import ConfigError, Settings
from config.schedules import Schedule
from executor.pool.schedules import parse_key, prepare, slot_key
from executor.wire.registry import Registry, task, task_def


def report(pages: int, scheduled_for: float = 0.0) -> None: ...


def cleanup() -> None: ...


def manifest(*defs: Any) -> dict[str, dict[str, Any]]:
    return Registry([task_def(d) for d in defs]).manifest()  # type: ignore[misc]


def toml(**fields: Any) -> Settings:
    fields.setdefault("name", "nightly")
    fields.setdefault("every_s", 60.0)
    return Settings(schedules=(Schedule(source="offload.toml", **fields),))


def test_code_and_toml_schedules_are_prepared() -> None:
    kinds = manifest(task(name="report")(report), task(name="cleanup", every_s=30)(cleanup))
    prepared = prepare(kinds, toml(kind="report", kwargs={"pages": 3}))
    assert sorted(prepared) == ["cleanup", "nightly"]
    assert prepared["cleanup"].schedule.source == "@task"
    assert prepared["cleanup"].scheduled_for is False
    assert prepared["nightly"].scheduled_for is True  # report takes scheduled_for
    assert prepared["nightly"].max_retries == Settings().default_max_retries


@pytest.mark.parametrize(("settings", "message"), [
    (toml(kind="reprot"),
     "offload.toml: schedule 'nightly': unknown task kind 'reprot'; did you mean: report"),
    (toml(kind="report"),
     "offload.toml: schedule 'nightly': 'args' do not fit the task: report(): missing a "
     "required argument: 'pages'"),
    (toml(kind="report", kwargs={"pages": 1, "scheduled_for": 5.0}),
     "'kwargs' sets scheduled_for, which the schedule gives"),
    (toml(kind="report", kwargs={"pages": object()}), "offload.toml: schedule 'nightly': "),
    (toml(name="cleanup", kind="cleanup"),
     "offload.toml: schedule 'cleanup': the name is also used by the schedule from @task"),
])
def test_a_schedule_that_does_not_fit_the_task_code_is_refused(settings: Settings,
                                                                message: str) -> None:
    kinds = manifest(task(name="report")(report), task(name="cleanup", every_s=30)(cleanup))
    with pytest.raises(ConfigError) as caught:
        prepare(kinds, settings)
    assert message in str(caught.value)


@pytest.mark.parametrize(("options", "message"), [
    ({"cron": "0 25 * * *"}, "schedule 'cleanup' (@task on kind 'cleanup'): 'cron' has "
                              "value '0 25 * * *', which does not parse"),
    ({"cron": "* * * * *", "every_s": 5}, "give exactly one of 'cron'"),
    ({"every_s": 5, "overlap": "later"}, "'overlap' has value 'later'; accepted: one of: "
                                         "allow, skip, queue"),
])
def test_a_bad_task_schedule_is_refused_naming_the_kind(options: dict[str, Any],
                                                        message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        prepare(manifest(task(name="cleanup", **options)(cleanup)), Settings())
    assert message in str(caught.value)


def test_schedule_options_without_a_schedule_are_an_error_at_import() -> None:
    with pytest.raises(ValueError, match="give cron= or every_s= too"):
        task(name="cleanup", overlap="skip")(cleanup)


def test_slot_keys_round_trip() -> None:
    assert parse_key(slot_key("a@b", 2_000_000_000.0)) == ("a@b", 2_000_000_000.0)
    assert slot_key("tick", 1.5) == "schedule:tick@1.500"
    assert parse_key("user-key") is None and parse_key(None) is None
