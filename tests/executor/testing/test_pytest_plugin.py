"""The pytest plugin, loaded through offload's ``pytest11`` entry point (in a
pytest started afresh, as a user's test suite starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
pytest_plugins = ["pytester"]

USER_TESTS = '''
import asyncio

from executor import BackgroundTasks
from executor.client import divert
from tests.executor.testing import calls_for_tests as c


async def hand_off(label):
    tasks = BackgroundTasks()
    tasks.add_task(c.record, label)
    await tasks()


def test_inline_fixture(offload_inline):
    c.reset()
    asyncio.run(hand_off("inline"))
    assert c.SEEN == [("inline", None)]
    assert [call.status for call in offload_inline.calls] == ["succeeded"]


def test_fake_fixture(offload_fake):
    c.reset()
    asyncio.run(hand_off("fake"))
    assert c.SEEN == []
    assert [call.args for call in offload_fake.calls] == [["fake"]]
    offload_fake.run_all()
    assert c.SEEN == [("fake", None)]


def test_no_mode_without_a_fixture():
    assert divert.handler is None
'''


def test_fixtures_come_from_the_entry_point(pytester: pytest.Pytester,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # for tests.executor.testing, not the plugin
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3)
    without = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:offload", "-q")
    without.assert_outcomes(passed=1, errors=2)
    without.stdout.fnmatch_lines(["*fixture 'offload_inline' not found*"])


def test_the_plugin_is_registered_as_pytest11() -> None:
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("offload") == "executor.testing.pytest_plugin"
