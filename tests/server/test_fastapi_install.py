"""``server.fastapi.install(app)``: the ``fastapi.BackgroundTasks`` of every route
and dependency of an unedited app become offload calls (recorded here by
``fake()``, run by ``inline()``), in order, one group per request; what offload
cannot make durable is refused at ``add_task`` with its usual message, or run
in-process when the app opts in."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI
from fastapi.testclient import TestClient

from config.settings import Settings
from executor import BackgroundTasks as OffloadBackgroundTasks
from executor.testing import fake, inline
from server.fastapi import OffloadTasks, install
from tests.support import install_app_funcs as funcs
from tests.support.install_app_funcs import note


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    funcs.DONE.clear()
    yield


class Mailer:
    def send(self, to: str) -> None:
        funcs.DONE.append(("mailer", to))


def dep_outer(tasks: BackgroundTasks) -> None:
    tasks.add_task(note, "outer dependency")


def dep_inner(tasks: BackgroundTasks, _: Annotated[None, Depends(dep_outer)]) -> str:
    tasks.add_task(note, "inner dependency")
    return "dep"


def make_app() -> FastAPI:
    app = FastAPI()

    @app.post("/steps")
    def steps(tasks: BackgroundTasks, dep: Annotated[str, Depends(dep_inner)]) -> dict[str, Any]:
        tasks.add_task(note, "route")
        return {"type": type(tasks).__name__}

    @app.post("/mixed")
    def mixed(tasks: BackgroundTasks, offload: OffloadTasks) -> dict[str, bool]:
        tasks.add_task(note, "fastapi annotation")
        offload.add_task(note, "OffloadTasks annotation")
        return {"same": tasks is offload}

    @app.post("/refused/{what}")
    def refused(what: str, tasks: BackgroundTasks) -> dict[str, str]:
        def closure() -> None:
            funcs.DONE.append("closure")

        fn, args = {"lambda": (lambda: funcs.DONE.append("lambda"), ()),
                    "closure": (closure, ()),
                    "bound": (Mailer().send, ("ada@example.com",)),
                    "unencodable": (note, (object(),))}[what]
        tasks.add_task(fn, *args)
        tasks.add_task(note, f"after {what}")
        return {"added": what}

    return app


def test_every_route_and_dependency_gets_offloads_tasks_in_order() -> None:
    app = make_app()
    install(app)
    with fake() as offload:
        response = TestClient(app).post("/steps")
    assert response.json() == {"type": "BackgroundTasks"}
    assert [(c.kind, c.args) for c in offload.calls] == [
        ("tests.support.install_app_funcs.note", ["outer dependency"]),
        ("tests.support.install_app_funcs.note", ["inner dependency"]),
        ("tests.support.install_app_funcs.note", ["route"])]
    assert len({c.group_id for c in offload.calls}) == 1  # one instance per request
    assert [c.seq for c in offload.calls] == [0, 1, 2]
    assert funcs.DONE == []  # recorded, not run in-process by FastAPI


def test_inline_runs_them_and_each_request_is_its_own_group() -> None:
    app = make_app()
    install(app)
    client = TestClient(app)
    with inline() as offload:
        client.post("/steps")
        client.post("/steps")
    assert funcs.DONE == ["outer dependency", "inner dependency", "route"] * 2
    assert len({c.group_id for c in offload.calls}) == 2


def test_inline_raises_a_failed_call_from_the_request_after_running_the_next() -> None:
    app = FastAPI()

    @app.post("/breaks")
    def breaks(tasks: BackgroundTasks) -> dict[str, str]:
        tasks.add_task(funcs.broken, "first")
        tasks.add_task(note, "second")
        return {"status": "ok"}

    install(app)
    settings = Settings(default_max_retries=1)
    with inline(settings=settings) as offload, pytest.raises(LookupError, match="first is"):
        TestClient(app).post("/breaks")
    assert funcs.DONE == ["first", "first", "second"]  # retried once, then the next ran
    assert [c.status for c in offload.calls] == ["failed", "succeeded"]


def test_the_instance_is_offloads_and_shared_with_offload_tasks() -> None:
    app = make_app()
    install(app)
    with fake() as offload:
        assert TestClient(app).post("/mixed").json() == {"same": True}
    assert [c.args[0] for c in offload.calls] == ["fastapi annotation",
                                                  "OffloadTasks annotation"]


@pytest.mark.parametrize("what", ["lambda", "closure", "bound", "unencodable"])
def test_what_cannot_be_durable_is_refused_at_add_task_with_todays_message(what: str) -> None:
    def todays_message() -> str:
        def closure() -> None:
            pass

        fn, args = {"lambda": (lambda: None, ()), "closure": (closure, ()),
                    "bound": (Mailer().send, ("ada@example.com",)),
                    "unencodable": (note, (object(),))}[what]
        with pytest.raises(TypeError) as caught:
            OffloadBackgroundTasks().add_task(fn, *args)
        return str(caught.value).split(": ", 1)[1]  # past add_task(<its name>)

    app = make_app()
    install(app)
    with fake() as offload, pytest.raises(TypeError) as caught:
        TestClient(app).post(f"/refused/{what}")
    assert str(caught.value).endswith(todays_message())
    assert offload.calls == [] and funcs.DONE == []


def test_in_process_fallback_runs_them_here_and_warns_once_per_function(
        caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()
    install(app, in_process_fallback=True)
    client = TestClient(app)
    with fake() as offload, caplog.at_level(logging.WARNING, logger="offload.server"):
        for what in ("lambda", "lambda", "closure", "bound", "unencodable"):
            assert client.post(f"/refused/{what}").status_code == 200
    *named, unencodable = funcs.DONE
    assert named == ["lambda", "lambda", "closure", ("mailer", "ada@example.com")]
    assert type(unencodable) is object  # FastAPI would pass the object as is
    # The durable calls of the same requests were recorded as offload calls.
    assert [c.args[0] for c in offload.calls] == [
        "after lambda", "after lambda", "after closure", "after bound", "after unencodable"]
    warnings = [r.getMessage() for r in caplog.records if "runs in this web process" in r.message]
    assert len(warnings) == 4  # the lambda twice, warned once
    assert any("lambdas cannot be imported" in w for w in warnings)


def test_install_leaves_the_openapi_schema_as_it_was() -> None:
    plain, installed = make_app(), make_app()
    install(installed)
    assert installed.openapi() == plain.openapi()


def test_routes_included_after_install_are_rewritten_when_the_app_starts() -> None:
    app = FastAPI()
    install(app)
    router = APIRouter()

    @router.post("/late")
    def late(tasks: BackgroundTasks) -> None:
        tasks.add_task(note, "late route")

    app.include_router(router)
    with fake() as offload:
        TestClient(app).post("/late")
    assert [c.args for c in offload.calls] == [["late route"]]


def test_routers_included_before_install_with_their_own_dependencies() -> None:
    inner = APIRouter()

    @inner.post("/deep")
    def deep(tasks: BackgroundTasks) -> None:
        tasks.add_task(note, "deep route")

    outer = APIRouter(dependencies=[Depends(dep_outer)])
    outer.include_router(inner, prefix="/inner")
    app = FastAPI()
    app.include_router(outer, prefix="/outer")
    install(app)
    with fake() as offload:
        assert TestClient(app).post("/outer/inner/deep").status_code == 200
    assert [c.args[0] for c in offload.calls] == ["outer dependency", "deep route"]
    assert funcs.DONE == []


def test_mounted_fastapi_apps_are_rewritten() -> None:
    app, sub = FastAPI(), make_app()
    app.mount("/sub", sub)
    install(app)
    with fake() as offload:
        TestClient(app).post("/sub/steps")
    assert len(offload.calls) == 3


def test_install_twice_is_harmless_and_a_different_choice_is_refused() -> None:
    app = make_app()
    install(app)
    install(app)
    with pytest.raises(ValueError, match="in_process_fallback=False"):
        install(app, in_process_fallback=True)
    with fake() as offload:
        TestClient(app).post("/steps")
    assert len(offload.calls) == 3


def test_a_route_that_raises_hands_off_nothing() -> None:
    app = FastAPI()

    @app.post("/fails")
    def fails(tasks: BackgroundTasks) -> None:
        tasks.add_task(note, "never")
        raise RuntimeError("route failed")

    install(app)
    with fake() as offload, pytest.raises(RuntimeError, match="route failed"):
        TestClient(app).post("/fails")
    assert offload.calls == []
