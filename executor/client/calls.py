"""What ``add_task`` checks and keeps of one call, before it is handed off.

``prepare(fn, args, kwargs)`` is the whole contract: it raises ``TypeError``
saying why and what to do if an executor could not make the call (see
``executor.client.background`` for the rules), else returns the call's kind,
import reference, encoded arguments and the ``@task`` options the pool
cannot learn otherwise (it never imports the function). What is learnt of a
function (``Target``) is worked out once and cached.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from config.settings import MAX_RETRIES, MAX_TIMEOUT_S, MIN_TIMEOUT_S
from executor.wire.callcheck import CallCheck, params_of
from executor.wire.codec import encode_call
from executor.wire.registry import import_object, is_async, task_def

__all__ = ["PreparedCall", "Target", "prepare", "target_of"]


@dataclass(frozen=True, slots=True)
class Target:
    """What an executor needs to find a function again, worked out once per function."""

    kind: str
    ref: str
    names: tuple[str, ...]  # positional parameter names, for error messages
    check: CallCheck | None  # None: the signature cannot be read (some builtins)
    options: tuple[tuple[str, Any], ...]  # the @task options the pool cannot know otherwise


@dataclass(frozen=True, slots=True)
class PreparedCall:
    """One checked call: what its task spec is made of."""

    kind: str
    ref: str
    payload: bytes
    options: tuple[tuple[str, Any], ...]


def _refuse(fn: object, why: str, todo: str) -> TypeError:
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return TypeError(f"add_task({name}): {why}; {todo}")


_MODULE_LEVEL = ("define it at module level in a module the executors can import "
                 "(e.g. one listed in task_modules)")


def target_of(fn: Callable[..., Any]) -> Target:
    """Check that an executor can re-create ``fn`` and describe it. Raises ``TypeError``."""
    if isinstance(fn, functools.partial):
        raise _refuse(fn, "functools.partial objects cannot be sent to an executor",
                      "pass the function and all its arguments to add_task")
    owner: object = None
    if inspect.ismethod(fn):
        owner = fn.__self__
        if not isinstance(owner, type):
            raise _refuse(fn, "bound methods cannot be re-created in an executor",
                          "use a module-level function and pass the object's id")
    elif inspect.isbuiltin(fn):
        if not inspect.ismodule(fn.__self__):
            raise _refuse(fn, "bound methods cannot be re-created in an executor",
                          "use a module-level function and pass the object's id")
    elif inspect.isclass(fn):
        raise _refuse(fn, "a class is not a function", "call a module-level function that "
                      "builds and uses the object, and pass it plain arguments")
    elif not inspect.isfunction(fn):
        raise _refuse(fn, f"{type(fn).__name__} objects are not functions and cannot be "
                      "re-created in an executor", "wrap the call in a module-level function")
    return _describe(fn, owner)


@functools.lru_cache(maxsize=1024)
def _describe(fn: Callable[..., Any], owner: object) -> Target:
    module, qualname = getattr(fn, "__module__", None), fn.__qualname__
    if fn.__name__ == "<lambda>":
        raise _refuse(fn, "lambdas cannot be imported by an executor", _MODULE_LEVEL)
    if "<locals>" in qualname:
        raise _refuse(fn, "nested functions and closures cannot be imported by an executor",
                      _MODULE_LEVEL + ", and pass what it captured as arguments")
    if module == "__main__":
        raise _refuse(fn, "functions defined in __main__ (the script that was run) cannot be "
                      "imported by an executor", "move it into an importable module")
    if not module:
        raise _refuse(fn, "it has no __module__ to import it from", _MODULE_LEVEL)
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise _refuse(fn, "generator functions return a generator, which cannot be sent back",
                      "use a function that does the work and returns a plain value")
    try:
        found: Any = import_object(f"{module}:{qualname}")
    except Exception as exc:
        raise _refuse(fn, f"{module}:{qualname} cannot be imported ({exc})",
                      _MODULE_LEVEL) from None
    same = (found is fn if owner is None else
            getattr(found, "__func__", None) is getattr(fn, "__func__", fn)
            and getattr(found, "__self__", None) is owner)
    if not same:
        raise _refuse(fn, f"importing {module}:{qualname} gives another object than this "
                      "function (was it replaced, or decorated without functools.wraps?)",
                      "pass the function the module exposes under that name")
    ref = f"{module}:{qualname}"
    params = params_of(fn)
    check = None if params is None else CallCheck(ref, params)
    names = () if check is None else tuple(
        p.name for p in check.signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    d = task_def(fn)
    options: tuple[tuple[str, Any], ...] = ()
    if d is not None:
        problem = d.options.out_of_bounds(min_timeout_s=MIN_TIMEOUT_S,
                                          max_timeout_s=MAX_TIMEOUT_S, max_retries=MAX_RETRIES)
        if problem is not None:  # the pool would refuse every call of it
            raise TypeError(f"add_task({ref}): {problem}")
        options = tuple((k, v) for k, v in (("max_retries", d.options.max_retries),
                                             ("timeout_s", d.options.timeout_s))
                        if v is not None)
    if is_async(fn):  # the pool cannot import it: tell it the calls may share an executor
        own = d.options.concurrency if d is not None else None
        options += (("concurrency", own or 0),)  # 0: the async_concurrency setting
    return Target(d.kind if d is not None else f"{module}.{qualname}", ref, names,
                   check, options)


def prepare(fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
            ) -> PreparedCall:
    """Check ``fn(*args, **kwargs)`` as an executor would make it and encode
    its arguments. Raises ``TypeError`` naming the function (and the
    argument, when one cannot be encoded) and what to do."""
    target = target_of(fn)
    # Binding depends on the call's shape alone: CallCheck binds each shape
    # once (``Signature.bind`` costs ~3 us), as the pool checks HTTP calls.
    why = None if target.check is None else target.check.why(len(args), tuple(kwargs))
    if why is not None:
        raise TypeError(f"add_task({target.ref}): {why}; the call would fail in the executor")
    try:
        payload = encode_call(args, kwargs, target.names)
    except TypeError as exc:
        raise TypeError(f"add_task({target.ref}): {exc}") from None
    return PreparedCall(target.kind, target.ref, payload, target.options)
