"""@task registration and the registry built from task modules."""

from __future__ import annotations

from typing import Any

import pytest

from executor.wire.errors import UnknownKind
from executor.wire.registry import Registry, default_kind, resolve_ref, task, task_def


def test_task_marks_the_function_and_keeps_it_callable() -> None:
    @task(name="greet", max_retries=2, timeout_s=5)
    def greet(name: str) -> str:
        return f"hi {name}"

    assert greet("ada") == "hi ada"
    d = task_def(greet)
    assert d is not None and d.kind == "greet" and d.options.max_retries == 2


def test_default_kind_is_module_qualname() -> None:
    @task
    def plain() -> None: ...

    assert task_def(plain).kind == default_kind(plain)  # type: ignore[union-attr]
    assert default_kind(plain).startswith("tests.executor.wire.test_registry.")


def test_registry_from_modules_and_close_matches() -> None:
    reg = Registry.from_modules(["tests.support.tasks"])
    assert "echo" in reg and "noop" in reg
    with pytest.raises(UnknownKind, match="unknown task kind 'ech'; did you mean: echo"):
        reg.get("ech")
    assert reg.manifest()["flaky"]["retry_backoff_s"] == 0.2


def test_missing_module_and_duplicate_kinds_are_errors() -> None:
    with pytest.raises(ImportError, match=r"task module 'no\.such\.module' cannot be imported"):
        Registry.from_modules(["no.such.module"])

    def a() -> None: ...

    def b() -> None: ...

    with pytest.raises(ValueError, match="registered twice"):
        Registry([task_def(task(name="x")(a)), task_def(task(name="x")(b))])  # type: ignore[list-item]


def test_resolve_ref() -> None:
    assert resolve_ref("tests.support.tasks:noop").__name__ == "noop"
    with pytest.raises(UnknownKind, match="cannot import"):
        resolve_ref("tests.support.tasks:nope")


BOUNDS: dict[str, Any] = {"min_timeout_s": 0.001, "max_timeout_s": 604_800.0,
                          "max_retries": 100}


@pytest.mark.parametrize(("options", "name"), [
    ({"timeout_s": 1e-9}, "timeout_s"),       # the setting's floor is 0.001
    ({"timeout_s": 604_801}, "timeout_s"),
    ({"timeout_s": float("nan")}, "timeout_s"),
    ({"max_retries": -1}, "max_retries"),
    ({"max_retries": 101}, "max_retries"),
    ({"max_retries": 2.0}, "max_retries"),
    ({"retry_backoff_s": -1}, "retry_backoff_s"),
    ({"retry_backoff_max_s": float("inf")}, "retry_backoff_max_s"),
])
def test_options_out_of_the_settings_bounds_are_named(options: dict[str, Any],
                                                      name: str) -> None:
    @task(name="tiny", **options)
    def tiny() -> None:
        pass

    problem = task_def(tiny).options.out_of_bounds(**BOUNDS)  # type: ignore[union-attr]
    assert problem is not None and problem.startswith(f"@task({name}=")
    with pytest.raises(ValueError, match=rf"task kind 'tiny' \(.*tiny\): @task\({name}="):
        Registry([task_def(tiny)]).check_options(**BOUNDS)  # type: ignore[list-item]


def test_options_at_the_bounds_are_accepted() -> None:
    for options in ({"timeout_s": 0.001, "max_retries": 100, "retry_backoff_s": 0},
                    {"timeout_s": 604_800, "max_retries": 0}, {}):
        @task(**options)
        def fn() -> None:
            pass
        assert task_def(fn).options.out_of_bounds(**BOUNDS) is None  # type: ignore[union-attr]


def test_the_bounds_are_the_settings() -> None:
    from config.settings import FIELDS, MAX_RETRIES, MAX_TIMEOUT_S, MIN_TIMEOUT_S
    assert BOUNDS == {"min_timeout_s": MIN_TIMEOUT_S, "max_timeout_s": MAX_TIMEOUT_S,
                      "max_retries": MAX_RETRIES}
    assert (FIELDS["default_timeout_s"].metadata["min"],
            FIELDS["default_timeout_s"].metadata["max"],
            FIELDS["default_max_retries"].metadata["max"]) == (MIN_TIMEOUT_S, MAX_TIMEOUT_S,
                                                               MAX_RETRIES)


def test_concurrency_is_for_async_def_tasks_and_reaches_the_manifest() -> None:
    @task(name="hook", concurrency=10)
    async def hook() -> None: ...

    @task(name="one_at_a_time", concurrency=1)
    def plain() -> None: ...

    manifest = Registry([task_def(hook), task_def(plain)]).manifest()  # type: ignore[list-item]
    assert (manifest["hook"]["concurrency"], manifest["hook"]["async"]) == (10, True)
    assert (manifest["one_at_a_time"]["concurrency"], manifest["one_at_a_time"]["async"]) == (
        1, False)
    with pytest.raises(ValueError, match=r"concurrency=4\) on .*blocking: only async def tasks "
                                         r"run concurrently"):
        @task(concurrency=4)
        def blocking() -> None: ...
    with pytest.raises(ValueError, match="concurrency must be an integer >= 1"):
        @task(concurrency=0)
        async def zero() -> None: ...



def test_the_schedule_defaults_of_task_match_the_config_file_ones() -> None:
    """``wire`` imports no ``config``, so ``@task(every_s=...)`` keeps its own
    copy of the schedule defaults; a schedule in code and one in offload.toml
    must still mean the same when they leave a field out."""
    import dataclasses
    import inspect

    from config.schedules import Schedule
    from executor.wire import registry

    in_code = inspect.signature(registry.task).parameters
    in_file = {f.name: f.default for f in dataclasses.fields(Schedule)}
    for name in ("tz", "catch_up", "max_delay_s", "overlap"):
        assert in_code[name].default == in_file[name], name
