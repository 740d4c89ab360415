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

Modes are entered explicitly, never by an import or the environment, and do
not nest: entering one while one is on raises ``RuntimeError``. Leaving it
restores production behaviour. Each records ``.calls``
(``executor.testing.calls.Call``); entering it again starts a new list.
"""

from __future__ import annotations

import asyncio
import contextvars
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
from executor.testing.calls import Call, failure, run_in_order

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
        frame = traceback.extract_stack(limit=3)[0]
        self._entered_at = f"{frame.filename}:{frame.lineno}"
        self.calls = []
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

    def _take(self, specs: list[dict[str, Any]], settings: Settings,
              ids: list[str]) -> list[Call]:
        calls = [Call.from_spec(spec, settings) for spec in specs]
        self.calls.extend(calls)
        ids.extend(c.id for c in calls)
        return calls

    def _raise_failed(self, calls: list[Call]) -> None:
        failed = [c for c in calls if c.status == "failed"]
        if failed and self.raise_failures:
            raise failure(failed)


class Inline(_Mode):
    """Runs each hand-off's calls at hand-off; see the module docstring."""

    name = "inline"

    async def hand_off(self, specs: list[dict[str, Any]], settings: Settings | None,
                       ids: list[str]) -> None:
        """Run the calls of one hand-off in order, off the event loop; raise
        their failure at the end unless ``raise_failures`` is off."""
        chosen = self._settings(settings)
        calls = self._take(specs, chosen, ids)
        await _in_thread(run_in_order, calls, chosen)
        self._raise_failed(calls)


class Fake(_Mode):
    """Records each hand-off's calls; ``run_all()`` runs them. See the module docstring."""

    name = "fake"

    def __init__(self, *, raise_failures: bool = True, settings: Settings | None = None) -> None:
        super().__init__(raise_failures=raise_failures, settings=settings)
        self._settings_of: dict[int, Settings] = {}  # id(call) -> settings of its hand-off

    async def hand_off(self, specs: list[dict[str, Any]], settings: Settings | None,
                       ids: list[str]) -> None:
        """Record the calls of one hand-off."""
        chosen = self._settings(settings)
        for call in self._take(specs, chosen, ids):
            self._settings_of[id(call)] = chosen

    def run_all(self) -> list[Call]:
        """Run the recorded calls that have not run yet, in the order recorded,
        as ``inline()`` runs them (in a thread of their own; this blocks until
        they have ended, even in a running event loop), and return them.
        Raises their failure at the end unless ``raise_failures`` is off."""
        pending = [c for c in self.calls if c.status == "pending"]
        by_settings: list[tuple[Settings, list[Call]]] = []
        for call in pending:
            chosen = self._settings_of.get(id(call)) or self._settings(None)
            if by_settings and by_settings[-1][0] is chosen:
                by_settings[-1][1].append(call)
            else:
                by_settings.append((chosen, [call]))
        for chosen, calls in by_settings:
            _join_thread(run_in_order, calls, chosen)
        self._raise_failed(pending)
        return pending

    def clear(self) -> None:
        """Forget every recorded call."""
        self.calls.clear()
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


def _thread_target(fn: Callable[..., None], args: tuple[Any, ...],
                   done: Callable[[BaseException | None], None]) -> Callable[[], None]:
    def target() -> None:
        try:
            # A fresh context: the calls see no context variable of the
            # request that added them, as in an executor.
            contextvars.Context().run(fn, *args)
        except BaseException as exc:  # run_in_order does not raise; report it anyway
            done(exc)
        else:
            done(None)
    return target


async def _in_thread(fn: Callable[..., None], *args: Any) -> None:
    """Run ``fn(*args)`` in a new thread and wait for it without blocking the loop."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def done(exc: BaseException | None) -> None:
        def settle() -> None:
            if ended.done():
                return
            if exc is None:
                ended.set_result(None)
            else:
                ended.set_exception(exc)
        loop.call_soon_threadsafe(settle)

    threading.Thread(target=_thread_target(fn, args, done), name="offload-inline",
                     daemon=True).start()
    await ended


def _join_thread(fn: Callable[..., None], *args: Any) -> None:
    """Run ``fn(*args)`` in a new thread and block until it ends."""
    errors: list[BaseException] = []

    def done(exc: BaseException | None) -> None:
        if exc is not None:
            errors.append(exc)

    thread = threading.Thread(target=_thread_target(fn, args, done), name="offload-fake",
                              daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
