"""Template generations on real template processes; the fleet behind the
``GenerationsOwner`` seam is a recorder (no executors are placed or run)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from config import Settings
from executor.pool.generations import TemplateGenerations
from executor.pool.templates import TemplateProcess

T = TypeVar("T")
TASKS = Settings(task_modules=["tests.support.tasks"])


class Owner:
    """Records what the generations tell the fleet."""

    def __init__(self) -> None:
        self.settings = TASKS
        self.stopping = False
        self.spawns: list[tuple[int, int]] = []
        self.exits: list[tuple[int, str]] = []
        self.stops: list[tuple[str, Callable[[int], bool]]] = []
        self.top_ups = 0

    def spawned(self, slot_id: int, pid: int) -> None:
        self.spawns.append((slot_id, pid))

    def exited(self, pid: int, status: str) -> None:
        self.exits.append((pid, status))

    def stop_executors(self, reason: str, of: Callable[[int], bool]) -> None:
        self.stops.append((reason, of))

    def top_up(self) -> None:
        self.top_ups += 1


async def until(predicate: Callable[[], T], what: str, timeout_s: float = 30.0) -> T:
    """Let the loop run until ``predicate()`` is truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def started() -> Iterator[list[TemplateProcess]]:
    """Every template a test starts is killed and reaped at teardown."""
    templates: list[TemplateProcess] = []
    yield templates
    for tpl in templates:
        if tpl.proc is not None and tpl.proc.poll() is None:
            tpl.proc.kill()
            tpl.proc.wait(10)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_use_makes_a_template_current_and_the_previous_one_drains_and_is_reaped(
        started: list[TemplateProcess]) -> None:
    owner = Owner()
    gens = TemplateGenerations(owner)

    async def scenario() -> None:
        first = await gens.start()
        started.append(first)
        assert gens.current is None and gens.generation == -1  # not current before use
        gens.use(first)
        assert gens.current is first and gens.generation == first.generation == 1
        assert set(gens.manifest) >= {"noop", "echo"} and owner.top_ups == 1
        second = await gens.start()
        started.append(second)
        gens.use(second)
        assert gens.current is second and gens.generation == 2
        assert first.draining and first in gens.draining
        reason, of = owner.stops[-1]
        assert reason == "reload" and of(1) and not of(2)  # all but the new generation
        # A drained template with no executors exits; it is collected, no zombie.
        await until(lambda: first not in gens.draining, "the drained template's exit")

        def reaped() -> bool:
            gens.reap()
            return first.proc is not None and first.proc.returncode is not None

        await until(reaped, "the drained template to be reaped")
        assert second.proc is not None and second.proc.poll() is None
        gens.close()

    run(scenario)


def test_a_dead_templates_manifest_is_kept_until_its_successor_loads(
        started: list[TemplateProcess], caplog: pytest.LogCaptureFixture) -> None:
    owner = Owner()
    gens = TemplateGenerations(owner)

    async def scenario() -> None:
        first = await gens.start()
        started.append(first)
        gens.use(first)
        kinds = dict(first.manifest)
        # The successor cannot load for now: the window stays open for the test.
        owner.settings = dataclasses.replace(TASKS, task_modules=["tests.no_such_module"])
        assert first.proc is not None
        os.kill(first.proc.pid, signal.SIGKILL)
        await until(lambda: gens.current is None, "the template's death to be seen")
        reason, of = owner.stops[-1]
        assert reason == "crash" and of(1) and not of(2)  # only the dead generation's
        await until(lambda: any("no_such_module" in r.getMessage() and "retrying" in
                                r.getMessage() for r in caplog.records),
                    "a replacement to fail to load")
        assert gens.current is None and gens.generation == -1
        assert gens.manifest == kinds  # still the dead one's: registered kinds stay known
        top_ups = owner.top_ups
        owner.settings = TASKS
        successor = await until(lambda: gens.current, "the successor to load")
        assert successor is not None
        started.append(successor)
        assert successor.generation > 2  # after at least one that failed
        assert gens.manifest is successor.manifest and set(gens.manifest) == set(kinds)
        assert owner.top_ups == top_ups + 1  # its executors are started at once
        gens.close()

    run(scenario)


def test_a_template_that_dies_while_the_pool_stops_is_not_replaced(
        started: list[TemplateProcess]) -> None:
    owner = Owner()
    gens = TemplateGenerations(owner)

    async def scenario() -> None:
        first = await gens.start()
        started.append(first)
        gens.use(first)
        owner.stopping = True
        assert first.proc is not None
        os.kill(first.proc.pid, signal.SIGKILL)
        # The socket's EOF and the decision are one callback: once it closed,
        # a replacement would have been decided on (``current`` cleared).
        await until(lambda: first.sock is None, "the template's socket to close")
        assert gens.current is first and [reason for reason, _ in owner.stops] == ["reload"]

    run(scenario)


def test_what_templates_say_of_their_executors_reaches_the_owner(
        started: list[TemplateProcess]) -> None:
    owner = Owner()
    gens = TemplateGenerations(owner)

    async def scenario() -> None:
        tpl = await gens.start()
        started.append(tpl)
        gens.use(tpl)
        pipes = [os.pipe() for _ in range(3)]  # task, result, control
        # The executor's ends: task read, result write, control read.
        ends = [pipes[0][0], pipes[1][1], pipes[2][0]]
        try:
            assert tpl.spawn(7, {}, ends)
            [(slot_id, pid)] = await until(lambda: owner.spawns, "SPAWNED")
            assert slot_id == 7
            os.kill(pid, signal.SIGKILL)
            assert await until(lambda: owner.exits, "EXITED") == [(pid, "SIGKILL")]
        finally:
            for r, w in pipes:
                os.close(r)
                os.close(w)
        gens.close()

    run(scenario)
