"""``inline()`` and ``fake()``: what a hand-off does in a test of your app.

Each is a context manager and a decorator (of ``def`` and ``async def``
functions). While one is on, every hand-off in this process (``await
tasks()`` of ``BackgroundTasks``, ``BackgroundTask``, ``OffloadTasks``'s
exit code, ``tasks.submit()``) goes to it instead of the pool: no pool, no
server, no socket. ``add_task`` is unchanged: it checks and encodes the
call exactly as in production, so a call production would refuse (a
lambda, an argument that cannot be encoded) fails at ``add_task`` here too.

- ``inline()`` runs each hand-off's calls at once, one after another in the
  order added, in a thread of this process (an ``async def`` call gets an
  event loop of its own there, as in an executor), and returns when all have
  ended: Starlette's and FastAPI's ``TestClient`` wait for it, so the
  test's assertions run after the calls. A failed call does not stop the
  next; retries follow the task's policy, without sleeping. When calls
  failed for good, the hand-off raises at its end (the call's exception,
  or an ``ExceptionGroup``), unless ``raise_failures=False``: then read
  ``.failures``.
- ``fake()`` only records each call (``.calls``); ``.run_all()`` runs the
  recorded calls that have not run, in order, as ``inline()`` does.

``server.Client`` and ``AsyncClient`` are diverted too (``submit``, ``get``,
``wait``, ``cancel``; see ``server.inprocess``): a task submitted by kind is
checked as the pool checks it (an unknown kind or arguments that do not fit
its function raise ``InvalidRequest``), then run or recorded like a
hand-off's call. Kinds come from the settings' ``task_modules``, imported on
first use as the executors' template imports them.

Modes are entered explicitly, never by an import or the environment, and do
not nest: entering one while one is on raises ``RuntimeError``. Leaving it
restores production behaviour. Each records ``.calls``
(``executor.testing.calls.Call``); entering it again starts a new list.
"""

from __future__ import annotations

import functools
import inspect
import threading
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar

from config.settings import Settings
from executor.client import divert
from executor.client.shared import default_settings
from executor.testing.calls import Call, failure, run_in_order, take, to_wire
from executor.testing.threads import in_thread, join_thread
from executor.wire.errors import PoolError
from executor.wire.registry import Registry

P = ParamSpec("P")
R = TypeVar("R")


class _Mode:
    """Shared by ``Inline`` and ``Fake``: entering, leaving, decorating."""

    name = "mode"

    def __init__(self, *, raise_failures: bool = True, settings: Settings | None = None) -> None:
        self.raise_failures = raise_failures
        self.settings = settings
        self.calls: list[Call] = []
        self._entered_at = ""
        self._lock = threading.Lock()  # hand-offs may come from several threads
        self._registries: dict[int, tuple[Settings, Registry]] = {}
        self._by_key: dict[str, Call] = {}  # idempotency key -> its first call
        self._settings_of: dict[int, Settings] = {}  # id(call) -> its settings

    @property
    def failures(self) -> list[Call]:
        """The calls that failed for good, in order."""
        return [c for c in self.calls if c.status == "failed"]

    def __enter__(self) -> Self:
        on = divert.handler
        if on is not None:
            where = getattr(on, "_entered_at", "")
            raise RuntimeError(
                f"executor.testing.{self.name}() cannot start: {getattr(on, 'name', on)}() is "
                f"already on{f' (entered at {where})' if where else ''}; offload's test modes "
                "do not nest: leave the first one, or use only one fixture")
        # Where the test entered it: the first frame outside this module.
        frame = next((f for f in reversed(traceback.extract_stack(limit=8))
                      if f.filename != __file__), None)
        self._entered_at = f"{frame.filename}:{frame.lineno}" if frame else ""
        self.calls = []
        self._by_key.clear()
        self._settings_of.clear()
        divert.handler = self
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if divert.handler is self:
            divert.handler = None

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``fn`` (``def`` or ``async def``) to run inside this mode."""
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await fn(*args, **kwargs)
            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with self:
                return fn(*args, **kwargs)
        return run

    async def hand_off(self, specs: list[dict[str, Any]], settings: Settings | None,
                       ids: list[str]) -> None:
        """``executor.client.divert.Handler.hand_off``."""
        raise NotImplementedError

    def _settings(self, given: Settings | None) -> Settings:
        # As a hand-off would: the BackgroundTasks' own settings, else this
        # mode's, else the process's (offload.toml, OFFLOAD_* variables).
        return given or self.settings or default_settings()

    def _registry(self, settings: Settings) -> Registry:
        with self._lock:
            known = self._registries.get(id(settings))
            if known is None or known[0] is not settings:
                known = self._registries[id(settings)] = (
                    settings, Registry.from_modules(settings.task_modules))
            return known[1]

    def _take(self, specs: list[dict[str, Any]], settings: Settings) -> list[Call]:
        calls = take(specs, settings, self._registry(settings))
        with self._lock:
            fresh = []
            for call in calls:
                key = call.task.idempotency_key
                same = self._by_key.get(key) if key is not None else None
                if same is None:
                    if key is not None:
                        self._by_key[key] = call
                    self.calls.append(call)
                    self._settings_of[id(call)] = settings
                    fresh.append(call)
        return fresh

    def _ids(self, specs: list[dict[str, Any]], fresh: list[Call]) -> list[str]:
        # A spec whose idempotency key was seen gets the first call's id.
        out, new = [], iter([c for c in fresh if c.task.idempotency_key is None])
        for spec in specs:
            key = spec.get("idempotency_key")
            same = self._by_key.get(key) if key is not None else None
            out.append(same.id if same is not None else next(new).id)
        return out

    def _raise_failed(self, calls: list[Call]) -> None:
        failed = [c for c in calls if c.status == "failed"]
        if failed and self.raise_failures:
            raise failure(failed)

    def _run(self, calls: list[Call]) -> None:
        """Run ``calls`` (blocking, in a thread), grouped by the settings they came with."""
        for settings, group in self._by_settings(calls):
            join_thread(run_in_order, group, settings)

    def _by_settings(self, calls: list[Call]) -> list[tuple[Settings, list[Call]]]:
        groups: list[tuple[Settings, list[Call]]] = []
        for call in calls:
            chosen = self._settings_of.get(id(call)) or self._settings(None)
            if groups and groups[-1][0] is chosen:
                groups[-1][1].append(call)
            else:
                groups.append((chosen, [call]))
        return groups

    def submit(self, specs: list[dict[str, Any]], settings: Settings | None = None) -> list[str]:
        """Take tasks submitted by kind (``server.Client``): checked as the pool
        checks them (raises its ``PoolError``), then run or recorded; their ids."""
        fresh = self._take(specs, self._settings(settings))
        self._submitted(fresh)
        return self._ids(specs, fresh)

    def _submitted(self, calls: list[Call]) -> None:
        raise NotImplementedError

    def record(self, task_id: str) -> dict[str, Any]:
        """The record of call ``task_id`` as the pool sends it; ``PoolError``
        ``not_found`` if this mode has none."""
        for call in self.calls:
            if call.id == task_id:
                return to_wire(call)
        raise PoolError("not_found", f"no task with id {task_id!r}", "id")

    def cancel(self, task_id: str, force: bool = False) -> dict[str, Any]:
        """Cancel call ``task_id`` if it has not run (``PoolError`` ``conflict``
        if it has, ``not_found`` if there is none); its record."""
        self.record(task_id)
        call = next(c for c in self.calls if c.id == task_id)
        if call.status != "pending":
            raise PoolError("conflict", f"task {task_id} already ended ({call.status})", "id")
        call.status = "cancelled"
        return to_wire(call)


class Inline(_Mode):
    """Runs each hand-off's calls at hand-off; see the module docstring."""

    name = "inline"

    async def hand_off(self, specs: list[dict[str, Any]], settings: Settings | None,
                       ids: list[str]) -> None:
        """Run the calls of one hand-off in order, off the event loop; raise
        their failure at the end unless ``raise_failures`` is off."""
        chosen = self._settings(settings)
        calls = self._take(specs, chosen)
        ids.extend(self._ids(specs, calls))
        await in_thread(run_in_order, calls, chosen)
        self._raise_failed(calls)

    def _submitted(self, calls: list[Call]) -> None:
        self._run(calls)
        self._raise_failed(calls)


class Fake(_Mode):
    """Records each hand-off's calls; ``run_all()`` runs them. See the module docstring."""

    name = "fake"

    async def hand_off(self, specs: list[dict[str, Any]], settings: Settings | None,
                       ids: list[str]) -> None:
        """Record the calls of one hand-off."""
        ids.extend(self._ids(specs, self._take(specs, self._settings(settings))))

    def _submitted(self, calls: list[Call]) -> None:
        pass  # recorded: run_all() runs them

    def run_all(self) -> list[Call]:
        """Run the recorded calls that have not run yet, in the order recorded,
        as ``inline()`` runs them (in a thread of their own; this blocks until
        they have ended, even in a running event loop), and return them.
        Raises their failure at the end unless ``raise_failures`` is off."""
        pending = [c for c in self.calls if c.status == "pending"]
        self._run(pending)
        self._raise_failed(pending)
        return pending

    def clear(self) -> None:
        """Forget every recorded call."""
        self.calls.clear()
        self._by_key.clear()
        self._settings_of.clear()


def inline(*, raise_failures: bool = True, settings: Settings | None = None) -> Inline:
    """A mode in which hand-offs run their calls at once, in this process.

    ``raise_failures=False`` collects failures in ``.failures`` instead of
    raising them. ``settings`` give the defaults the pool would apply
    (``default_max_retries``, ``max_result_bytes``); by default those of
    this process (``offload.toml``, ``OFFLOAD_*``). See the module docstring.
    """
    return Inline(raise_failures=raise_failures, settings=settings)


def fake(*, raise_failures: bool = True, settings: Settings | None = None) -> Fake:
    """A mode in which hand-offs record their calls (``.calls``), run later by
    ``.run_all()``; arguments as for ``inline()``."""
    return Fake(raise_failures=raise_failures, settings=settings)
