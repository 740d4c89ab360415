"""``@task`` and the registry of task kinds.

``@task`` only marks a function (it stays callable as before); no global
state is touched at import. A ``Registry`` is built from the configured
task modules by whoever needs one: the template process (to run tasks) and
tests. The pool never imports task code: the template sends it the
registry's ``manifest()`` instead, which describes each kind's parameters
(``executor.wire.callcheck``) so that the pool can refuse a call that does not
fit them before it is stored.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, overload

from executor.wire.callcheck import params_of
from executor.wire.errors import UnknownKind

P = ParamSpec("P")
R = TypeVar("R")
_MARK = "__offload_task__"
DEFAULT_MAX_DELAY_S = 3600.0  # config.schedules.DEFAULT_MAX_DELAY_S (wire imports no config)


@dataclass(frozen=True)
class TaskOptions:
    """Per-kind options; ``None`` means "use the setting's default".

    ``out_of_bounds`` checks them against the bounds of the settings they
    stand in for, which ``config.settings`` declares (``MIN_TIMEOUT_S``...):
    whoever loads task code passes those bounds in (this module imports
    nothing of offload's), the template for every kind it loads and
    ``add_task`` for the function it is given.
    """

    max_retries: int | None = None
    timeout_s: float | None = None
    retry_backoff_s: float | None = None
    retry_backoff_max_s: float | None = None
    retry_on: tuple[type[BaseException], ...] | None = None
    concurrency: int | None = None  # async def tasks only; None = async_concurrency
    # {"cron", "every_s", "tz", "catch_up", "max_delay_s", "overlap"} or None:
    # run on a schedule (config.schedules), named after the kind.
    schedule: dict[str, Any] | None = None

    def out_of_bounds(self, *, min_timeout_s: float, max_timeout_s: float,
                      max_retries: int) -> str | None:
        """What is wrong with these options (``"@task(timeout_s=1e-09): must
        be ..."``), or ``None``: a kind may not go where its setting cannot,
        and the pool would refuse every task of such a kind."""
        retries = self.max_retries
        if retries is not None and (type(retries) is not int or not 0 <= retries <= max_retries):
            return f"@task(max_retries={retries!r}): must be an integer from 0 to {max_retries}"
        return (_seconds_problem("timeout_s", self.timeout_s, min_timeout_s, max_timeout_s)
                or _seconds_problem("retry_backoff_s", self.retry_backoff_s, 0.0, math.inf)
                or _seconds_problem("retry_backoff_max_s", self.retry_backoff_max_s, 0.0,
                                    math.inf))

    def manifest(self) -> dict[str, Any]:
        """The options the pool needs (``retry_on`` stays in the executor)."""
        out: dict[str, Any] = {
            "max_retries": self.max_retries, "timeout_s": self.timeout_s,
            "retry_backoff_s": self.retry_backoff_s,
            "retry_backoff_max_s": self.retry_backoff_max_s, "concurrency": self.concurrency}
        if self.schedule is not None:
            out["schedule"] = dict(self.schedule)
        return out


def is_async(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is an ``async def`` function (or marked as one with
    ``inspect.markcoroutinefunction``): its calls may share an executor."""
    return inspect.iscoroutinefunction(fn)


def check_concurrency(fn: Callable[..., Any], concurrency: int | None) -> None:
    """Refuse a ``concurrency`` that cannot apply to ``fn`` (``ValueError``
    naming the function): it must be an integer >= 1, and above 1 only for
    ``async def`` functions (a ``def`` task keeps a process to itself)."""
    if concurrency is None:
        return
    where = f"@task(concurrency={concurrency!r}) on {default_kind(fn)}"
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"{where}: concurrency must be an integer >= 1")
    if concurrency > 1 and not is_async(fn):
        raise ValueError(f"{where}: only async def tasks run concurrently in an executor; "
                         f"a def task runs one at a time in its own process (drop "
                         f"concurrency, or make the function async def)")


def _seconds_problem(name: str, value: float | None, lo: float, hi: float) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not lo <= value <= hi:
        bound = f"from {lo:g} to {hi:g}" if hi < math.inf else f">= {lo:g}"
        return f"@task({name}={value!r}): must be a number of seconds {bound}"
    return None


@dataclass(frozen=True)
class TaskDef:
    """A registered task: its kind, function and options."""

    kind: str
    fn: Callable[..., Any]
    options: TaskOptions


def default_kind(fn: Callable[..., Any]) -> str:
    """The kind of an unnamed task: ``module.qualname``."""
    return f"{fn.__module__}.{fn.__qualname__}"


@overload
def task(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def task(*, name: str | None = None, max_retries: int | None = None,
         timeout_s: float | None = None, retry_backoff_s: float | None = None,
         retry_backoff_max_s: float | None = None,
         retry_on: tuple[type[BaseException], ...] | None = None,
         concurrency: int | None = None,
         cron: str | None = None, every_s: float | None = None, tz: str = "UTC",
         catch_up: str = "latest", max_delay_s: float = DEFAULT_MAX_DELAY_S,
         overlap: str = "allow",
         ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def task(fn: Callable[..., Any] | None = None, /, *, name: str | None = None,
         max_retries: int | None = None, timeout_s: float | None = None,
         retry_backoff_s: float | None = None, retry_backoff_max_s: float | None = None,
         retry_on: tuple[type[BaseException], ...] | None = None,
         concurrency: int | None = None,
         cron: str | None = None, every_s: float | None = None, tz: str = "UTC",
         catch_up: str = "latest", max_delay_s: float = DEFAULT_MAX_DELAY_S,
         overlap: str = "allow") -> Any:
    """Register a function as a task kind: ``@task`` or ``@task(name="send_email", ...)``.

    The kind defaults to ``module.qualname``. ``retry_on`` limits which
    exceptions are retried (crashes and timeouts always are).
    ``concurrency`` (``async def`` tasks only) is how many calls of this
    kind may run at once in one executor, on its event loop; ``None`` takes
    the ``async_concurrency`` setting, 1 runs them one at a time, alone in
    their executor. ``def`` tasks always run one at a time (``ValueError``
    for a ``concurrency`` above 1). The function is returned unchanged, so
    it can still be called directly.

    ``cron="*/5 * * * *"`` (in time zone ``tz``, UTC by default) or
    ``every_s=30`` also runs it on that schedule, with no arguments (plus
    ``scheduled_for``, its slot in seconds since the epoch, if it takes
    that parameter); ``catch_up``, ``max_delay_s`` and ``overlap`` as in
    ``config.schedules`` and the README. A bad schedule is refused by the
    pool (``executor.pool.schedules.prepare``), like a configuration error:
    at start it exits; on a reload it keeps running as it was.
    """
    schedule = None
    if cron is not None or every_s is not None:
        schedule = {"cron": cron, "every_s": every_s, "tz": tz, "catch_up": catch_up,
                    "max_delay_s": max_delay_s, "overlap": overlap}
    elif (tz, catch_up, max_delay_s, overlap) != ("UTC", "latest", DEFAULT_MAX_DELAY_S, "allow"):
        raise ValueError("@task: tz, catch_up, max_delay_s and overlap apply to a schedule; "
                         "give cron= or every_s= too")
    options = TaskOptions(max_retries, timeout_s, retry_backoff_s, retry_backoff_max_s,
                          tuple(retry_on) if retry_on is not None else None, concurrency,
                          schedule)

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(f):
            raise TypeError(f"@task needs a function, got {type(f).__name__}")
        check_concurrency(f, concurrency)
        setattr(f, _MARK, TaskDef(name or default_kind(f), f, options))
        return f

    return mark(fn) if fn is not None else mark


def task_def(fn: object) -> TaskDef | None:
    """The ``TaskDef`` attached by ``@task``, or ``None``."""
    found = getattr(fn, _MARK, None)
    return found if isinstance(found, TaskDef) else None


def import_object(spec: str) -> object:
    """Import ``module:qualname`` (dots allowed in both parts) and return it.

    Raises ``ImportError`` or ``AttributeError`` (also for a spec without ``:``).
    """
    module_name, _, qualname = spec.partition(":")
    if not module_name or not qualname:
        raise ImportError(f"{spec!r} is not of the form module:attribute")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def resolve_ref(ref: str) -> Callable[..., Any]:
    """Import ``module:qualname`` and return the function. Raises ``UnknownKind``."""
    try:
        obj = import_object(ref)
    except (ImportError, AttributeError) as exc:
        raise UnknownKind(f"cannot import task function {ref!r}: {exc}") from exc
    if not callable(obj):
        raise UnknownKind(f"{ref!r} is not callable")
    return obj


class Registry:
    """Task kinds by name, built from modules. Immutable once built."""

    def __init__(self, defs: Iterable[TaskDef] = ()) -> None:
        self._defs: dict[str, TaskDef] = {}
        for d in defs:
            other = self._defs.get(d.kind)
            if other is not None and other.fn is not d.fn:
                raise ValueError(
                    f"task kind {d.kind!r} is registered twice: by "
                    f"{default_kind(other.fn)} and {default_kind(d.fn)}; give one a name="
                )
            self._defs[d.kind] = d

    @classmethod
    def from_modules(cls, names: Iterable[str]) -> Registry:
        """Import each module and collect its ``@task`` functions."""
        defs = []
        for name in names:
            try:
                module = importlib.import_module(name)
            except ImportError as exc:
                raise ImportError(f"task module {name!r} cannot be imported: {exc}") from exc
            for _, obj in inspect.getmembers(module):
                d = task_def(obj)
                if d is not None:
                    defs.append(d)
        return cls(defs)

    def __contains__(self, kind: object) -> bool:
        return kind in self._defs

    def __len__(self) -> int:
        return len(self._defs)

    def kinds(self) -> list[str]:
        """Registered kinds, sorted."""
        return sorted(self._defs)

    def get(self, kind: str) -> TaskDef:
        """The task registered as ``kind``. Raises ``UnknownKind`` naming close matches."""
        try:
            return self._defs[kind]
        except KeyError:
            raise UnknownKind(unknown_kind_message(kind, self._defs)) from None

    def check_options(self, *, min_timeout_s: float, max_timeout_s: float,
                      max_retries: int) -> None:
        """Raise ``ValueError`` naming the first kind whose options are out of
        these bounds (``TaskOptions.out_of_bounds``)."""
        for kind, d in self._defs.items():
            problem = d.options.out_of_bounds(min_timeout_s=min_timeout_s,
                                              max_timeout_s=max_timeout_s,
                                              max_retries=max_retries)
            if problem is not None:
                raise ValueError(f"task kind {kind!r} ({default_kind(d.fn)}): {problem}")

    def manifest(self) -> dict[str, dict[str, Any]]:
        """``{kind: {options..., "params": callcheck.params_of(fn), "async": bool}}``
        for the pool (``async``: the kind's calls may share an executor)."""
        return {k: {**d.options.manifest(), "params": params_of(d.fn), "async": is_async(d.fn)}
                for k, d in self._defs.items()}


def unknown_kind_message(kind: str, known: Mapping[str, object] | Iterable[str]) -> str:
    """``unknown task kind 'x'; did you mean: ...; registered kinds: ...``."""
    names = sorted(known)
    close = difflib.get_close_matches(kind, names, n=3, cutoff=0.6)
    text = f"unknown task kind {kind!r}"
    if close:
        text += "; did you mean: " + ", ".join(close)
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    return text + ("; registered kinds: " + shown if names else "; no task kinds are registered")
