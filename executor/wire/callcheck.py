"""Whether a call fits a task function's parameters, decided without the function.

The pool never imports task code, yet a call whose arguments cannot bind
to the function would fail the same way on every attempt, retries
included. So the template describes each registered function's parameters
in the manifest (``params_of``), and the pool rebuilds a signature from
that description (``CallCheck``) and refuses such a call before storing it.

Binding depends only on the call's *shape*: how many positional arguments
and which keyword names. ``CallCheck`` binds placeholders of that shape
with ``inspect.Signature.bind`` (the check ``BackgroundTasks.add_task``
makes, with the same messages) and remembers the shapes that fit.
``CallChecks`` keeps one per kind for the pool, rebuilt when a reload brings
a new manifest; ``BackgroundTasks.add_task`` keeps one per function.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgpack

log = logging.getLogger("offload.pool")

P = inspect.Parameter
# A parameter's kind in the manifest: its index here (CPython's own order).
_KINDS = (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD, P.VAR_POSITIONAL, P.KEYWORD_ONLY,
          P.VAR_KEYWORD)
_MAX_FITS = 64  # call shapes remembered per kind
NO_ARGUMENTS = msgpack.packb([[], {}])  # what executor.wire.codec.encode_call([], {}) makes


def params_of(fn: Callable[..., Any]) -> list[list[Any]] | None:
    """``fn``'s parameters as the manifest carries them, in order:
    ``[name, kind, has_default]`` each, ``kind`` 0 positional-only,
    1 positional-or-keyword, 2 ``*args``, 3 keyword-only, 4 ``**kwargs``.
    ``None`` if the signature cannot be read: calls are then not checked."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins and C callables have none
        return None
    return [[p.name, _KINDS.index(p.kind), p.default is not p.empty]
            for p in signature.parameters.values()]


def _kind(code: object) -> inspect._ParameterKind:
    if type(code) is not int or not 0 <= code < len(_KINDS):
        raise ValueError(f"unknown parameter kind {code!r}")
    return _KINDS[code]


class _Default:
    """Stands for a default value the pool never sees, in the signature it shows."""

    def __repr__(self) -> str:
        return "..."


class CallCheck:
    """The parameters of one task kind, rebuilt from its manifest ``params``.

    Not thread-safe (it remembers the shapes that fit, up to ``_MAX_FITS``).
    """

    __slots__ = ("_fits", "_keyword_only", "_to_var_keyword", "accepts_any", "name",
                 "signature")

    def __init__(self, name: str, params: Sequence[Sequence[Any]]) -> None:
        """``name`` is how messages call the function (its kind). Raises
        ``ValueError`` if ``params`` is not a valid parameter list."""
        try:
            self.signature = inspect.Signature([
                P(p_name, _kind(p_kind), default=_Default() if has_default else P.empty)
                for p_name, p_kind, has_default in params])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: not a parameter list: {params!r} ({exc})") from None
        self.name = name
        kinds = {p.kind for p in self.signature.parameters.values()}
        self._keyword_only = {p.name for p in self.signature.parameters.values()
                              if p.kind is P.KEYWORD_ONLY}
        # With **kwargs, CPython collects a keyword named like a positional-only
        # parameter there; Signature.bind refuses it when that parameter has a
        # default. Renamed before binding, such a keyword goes to **kwargs too.
        self._to_var_keyword = frozenset(
            p.name for p in self.signature.parameters.values()
            if p.kind is P.POSITIONAL_ONLY) if P.VAR_KEYWORD in kinds else frozenset()
        self._fits: set[tuple[int, tuple[str, ...]]] = set()
        #: ``fn(*args, **kwargs)``: every call fits, callers may skip the check.
        self.accepts_any = kinds == {P.VAR_POSITIONAL, P.VAR_KEYWORD}

    def why(self, nargs: int, names: tuple[str, ...]) -> str | None:
        """``None`` if ``nargs`` positional arguments and keyword arguments named
        ``names`` bind, else why not (``Signature.bind``'s words)."""
        shape = (nargs, names)
        if shape in self._fits:
            return None
        keywords = {"\0" + k if k in self._to_var_keyword else k: None for k in names}
        try:
            self.signature.bind(*[None] * nargs, **keywords)
        except TypeError as exc:
            return str(exc)
        if len(self._fits) < _MAX_FITS:
            self._fits.add(shape)
        return None

    def problem(self, nargs: int, names: tuple[str, ...]) -> tuple[str, str] | None:
        """``why``, as the pool refuses a spec: ``None`` if the call binds, else
        ``(field, message)``, the field ``"kwargs"`` for a keyword that does
        not fit or a keyword-only parameter left out, ``"args"`` otherwise."""
        why = self.why(nargs, names)
        if why is None:
            return None
        missing = why.partition("missing a required argument: ")[2].strip("'")
        keyword = "keyword" in why or "multiple values" in why
        field = "kwargs" if keyword or missing in self._keyword_only else "args"
        return field, f"{self.name}(): {why}; the task's signature is {self.name}{self.signature}"


class CallChecks:
    """The pool's ``CallCheck`` of each kind, built once per manifest (a reload
    brings a new manifest object, and with it new checks). Not thread-safe."""

    def __init__(self) -> None:
        self._checks: dict[str, CallCheck | None] = {}  # None: not checked
        self._of: Mapping[str, Any] | None = None

    def problem(self, kind: str, opts: Mapping[str, Any], payload: bytes,
                manifest: Mapping[str, Any]) -> tuple[str, str] | None:
        """``None`` if the call encoded in ``payload`` may be stored for ``kind``
        (whose manifest entry is ``opts``); else ``(field, message)``: see
        ``CallCheck.problem``, or field ``"payload"`` if it is no encoded call."""
        if manifest is not self._of:
            self._checks, self._of = {}, manifest
        try:
            check = self._checks[kind]
        except KeyError:
            check = self._checks[kind] = _check_of_entry(kind, opts)
        if check is None or check.accepts_any:
            return None
        shape = call_shape(payload)
        if shape is None:
            return "payload", ("is not an encoded call: msgpack [args, kwargs] "
                               "(executor.wire.codec.encode_call)")
        return check.problem(*shape)


def _check_of_entry(kind: str, opts: Mapping[str, Any]) -> CallCheck | None:
    """The check of ``kind``'s ``params``; ``None`` (calls not checked) if its
    signature could not be read, or the entry is unusable."""
    params = opts.get("params")
    if params is None:
        return None
    try:
        return CallCheck(kind, params)
    except ValueError:
        log.warning("calls of task kind %r are not checked: its manifest entry has no "
                    "usable parameter list", kind, exc_info=True)
        return None


def call_shape(payload: bytes) -> tuple[int, tuple[str, ...]] | None:
    """``(number of positional arguments, keyword names)`` of an encoded call, or
    ``None`` if ``payload`` is not one. Extension values stay undecoded."""
    if payload == NO_ARGUMENTS:  # common enough to skip the decoding
        return 0, ()
    try:
        args, kwargs = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception:  # malformed msgpack, or not a pair: refused by the caller
        return None
    if type(args) is not list or type(kwargs) is not dict:
        return None
    return len(args), tuple(kwargs)
