"""The [schedules.<name>] tables of offload.toml: loaded, or refused naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_settings
from config.schedules import Schedule


def load(tmp_path: Path, text: str) -> tuple[Schedule, ...]:
    path = tmp_path / "offload.toml"
    path.write_text(text)
    return load_settings(path, environ={}).schedules


def test_schedules_load_with_their_defaults(tmp_path: Path) -> None:
    (report, refresh) = load(tmp_path, """
[schedules.nightly_report]
kind = "build_report"
cron = "0 3 * * *"
tz = "Europe/Paris"
kwargs = {pages = 5}

[schedules.refresh]
kind = "refresh_cache"
every_s = 30
args = ["home"]
catch_up = "all"
max_delay_s = 600
overlap = "skip"
""")
    assert report == Schedule(name="nightly_report", kind="build_report", cron="0 3 * * *",
                              tz="Europe/Paris", kwargs={"pages": 5},
                              source=str(tmp_path / "offload.toml"))
    assert (report.catch_up, report.max_delay_s, report.overlap) == ("latest", 3600.0, "allow")
    assert report.spec == "0 3 * * * (Europe/Paris)"
    assert (refresh.every_s, refresh.args, refresh.catch_up, refresh.max_delay_s,
            refresh.overlap, refresh.spec) == (30.0, ("home",), "all", 600.0, "skip",
                                               "every 30 s")


def test_no_schedules_table_means_none(tmp_path: Path) -> None:
    assert load(tmp_path, "executors = 2\n") == ()


@pytest.mark.parametrize(("table", "message"), [
    ('kind = "k"\ncron = "*/5 * * * *"\nevery_s = 30',
     "schedule 'bad': give exactly one of 'cron'"),
    ('kind = "k"', "schedule 'bad': give exactly one of 'cron'"),
    ('kind = "k"\ncron = "61 * * * *"',
     "schedule 'bad': 'cron' has value '61 * * * *', which does not parse"),
    ('kind = "k"\ncron = "* * * *"', "accepted: a cron expression of five fields"),
    ('kind = "k"\nevery_s = 0.5', "'every_s' has value 0.5; accepted: a number of seconds >= 1"),
    ('kind = "k"\ncron = "0 3 * * *"\ntz = "Mars/Olympus"',
     "'tz' has value 'Mars/Olympus', which is no known time zone"),
    ('kind = "k"\nevery_s = 30\ntz = "Europe/Paris"', "'tz' applies to 'cron' only"),
    ('kind = "k"\nevery_s = 30\ncatch_up = "some"',
     "'catch_up' has value 'some'; accepted: one of: latest, skip, all"),
    ('kind = "k"\nevery_s = 30\noverlap = "wait"',
     "'overlap' has value 'wait'; accepted: one of: allow, skip, queue"),
    ('kind = "k"\nevery_s = 30\nmax_delay_s = -1', "'max_delay_s' has value -1"),
    ('every_s = 30', "'kind' has value None; accepted: the name of a registered task kind"),
    ('kind = "k"\nevery_s = 30\nargs = "x"', "'args' has value 'x'; accepted: a list"),
    ('kind = "k"\nevery_s = 30\ncorn = "x"', "unknown key(s) 'corn'; accepted keys: kind, cron"),
])
def test_a_bad_schedule_is_refused_naming_it_and_what_is_accepted(
        tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f"[schedules.bad]\n{table}\n")
    assert message in str(caught.value)
    assert str(tmp_path / "offload.toml") in str(caught.value)


def test_schedules_must_be_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key 'schedules' must be a table of schedules"):
        load(tmp_path, 'schedules = ["x"]\n')


def test_unknown_top_level_keys_name_schedules_among_the_accepted(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"accepted keys: .*, schedules"):
        load(tmp_path, 'shedules = 1\n')
