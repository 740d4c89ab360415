"""Refusing calls that do not fit a task's signature, without a process: the
manifest's ``params``, ``CallCheck``'s verdicts against CPython's own calls,
and the pool's ``submit`` spec check (``Requests._spec``) on a stand-in pool."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest

from executor.pool.requests import Requests
from executor.pool.specs import Invalid
from executor.wire.callcheck import NO_ARGUMENTS, CallCheck, call_shape, params_of
from executor.wire.codec import encode_call
from executor.wire.registry import Registry

MODULES = ["tests.support.tasks", "tests.executor.signature_tasks"]

# -- CallCheck against CPython ---------------------------------------------------


def check_of(fn: Callable[..., Any]) -> CallCheck:
    params = params_of(fn)
    assert params is not None
    return CallCheck(fn.__name__, params)


def f_none() -> None: ...
def f_one(a: Any) -> None: ...
def f_default(a: Any, b: Any = 1) -> None: ...
def f_all(a: Any, /, b: Any, *, c: Any, d: Any = 1) -> None: ...
def f_any(*args: Any, **kwargs: Any) -> None: ...
def f_mixed(a: Any, *rest: Any, flag: bool = False, **extra: Any) -> None: ...
def f_posonly_kw(a: Any, /, **kw: Any) -> None: ...
def f_optional_posonly(a: Any = 1, /, *args: Any, b: Any, **kw: Any) -> None: ...
def f_kwonly(*, a: Any) -> None: ...


NAMES = ("a", "b", "c", "d", "zz", "args", "kwargs", "rest", "extra", "kw")


@pytest.mark.parametrize("fn", [f_none, f_one, f_default, f_all, f_any, f_mixed, f_posonly_kw,
                                f_optional_posonly, f_kwonly], ids=lambda f: f.__name__)
def test_verdict_is_cpythons(fn: Callable[..., None]) -> None:
    """For every call shape up to 4 positional and 2 keyword arguments: refused
    exactly when the real call raises TypeError."""
    check = check_of(fn)
    for nargs in range(5):
        for names in itertools.chain.from_iterable(
                itertools.combinations(NAMES, k) for k in range(3)):
            try:
                fn(*[None] * nargs, **dict.fromkeys(names))
                refused = False
            except TypeError:
                refused = True
            got = check.problem(nargs, names)
            assert (got is not None) == refused, (nargs, names, got)
            if got is not None:
                assert got[1].startswith(f"{fn.__name__}(): "), got
                assert got[1].endswith(f"; the task's signature is {fn.__name__}"
                                       f"{check.signature}"), got


@pytest.mark.parametrize(("nargs", "names", "field"), [
    (3, (), "args"),                 # too many positional
    (0, (), "args"),                 # 'a' and 'b' missing
    (1, ("c",), "args"),             # 'b' missing
    (2, ("zz", "c"), "kwargs"),      # unexpected
    (2, ("b", "c"), "kwargs"),       # twice
    (1, ("a", "b", "c"), "kwargs"),  # positional-only by keyword
    (2, (), "kwargs"),               # keyword-only 'c' missing
])
def test_field_blames_args_or_kwargs(nargs: int, names: tuple[str, ...], field: str) -> None:
    problem = check_of(f_all).problem(nargs, names)
    assert problem is not None and problem[0] == field, problem


def test_message_names_the_kind_and_shows_the_signature() -> None:
    check = CallCheck("send_email", [["to", 1, False], ["subject", 1, False], ["body", 1, True]])
    assert check.problem(1, ()) == (
        "args", "send_email(): missing a required argument: 'subject'; "
                "the task's signature is send_email(to, subject, body=...)")
    assert check.problem(2, ()) is None and check.problem(3, ()) is None
    assert check.problem(4, ())[0] == "args"  # type: ignore[index]
    assert not check.accepts_any
    assert check_of(f_any).accepts_any
    assert not check_of(f_mixed).accepts_any and not check_of(f_none).accepts_any


@pytest.mark.parametrize("params", [
    [["a", 7, False]],
    [["a", -1, False]],
    [["a", 1, True], ["b", 1, False]],
    [["a", 1, False], ["a", 3, False]],
    [[1, 1, False]],
    [["a", 1]],
    "abc",
])
def test_unusable_params_are_a_value_error(params: Any) -> None:
    with pytest.raises(ValueError, match="not a parameter list"):
        CallCheck("k", params)


# -- the manifest ----------------------------------------------------------------


def test_manifest_carries_each_kinds_params() -> None:
    manifest = Registry.from_modules(MODULES).manifest()
    # [name, kind, has_default]; kind 0 positional-only, 1 positional-or-keyword,
    # 2 *args, 3 keyword-only, 4 **kwargs
    assert manifest["kwonly"]["params"] == [["a", 1, False], ["b", 3, False], ["c", 3, True]]
    assert manifest["posonly"]["params"] == [["a", 0, False], ["b", 1, True]]
    assert manifest["mixed"]["params"] == [["a", 1, False], ["rest", 2, False],
                                           ["flag", 3, True], ["extra", 4, False]]
    assert manifest["noop"]["params"] == []
    assert manifest["unreadable"]["params"] is None  # calls not checked
    assert manifest["flaky"]["max_retries"] == 5  # the options are still there
    assert params_of(min) is None  # a builtin without a signature
    # It crosses the template's socket as msgpack.
    assert msgpack.unpackb(msgpack.packb(manifest)) == manifest


# -- the pool's submit check -----------------------------------------------------


def _requests(manifest: dict[str, Any] | None = None) -> Requests:
    pool = SimpleNamespace(manifest=manifest or Registry.from_modules(MODULES).manifest(),
                           settings=SimpleNamespace(default_max_retries=3,
                                                    default_timeout_s=300.0))
    return Requests(pool)  # type: ignore[arg-type]


def _spec(kind: str, /, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"kind": kind, "payload": encode_call(args, kwargs)}


def _refusal(req: Requests, spec: dict[str, Any], i: int = 0) -> Invalid:
    with pytest.raises(Invalid) as info:
        req.specs.task(i, spec, 0.0)
    assert info.value.code == "invalid"
    return info.value


@pytest.mark.parametrize(("spec", "field", "message"), [
    (_spec("noop", 1), "args", "noop(): too many positional arguments"),
    (_spec("record"), "args", "record(): missing a required argument: 'name'"),
    (_spec("record", "a", "b", True, 4), "args", "record(): too many positional arguments"),
    (_spec("record", "a", "b", zz=1), "kwargs",
     "record(): got an unexpected keyword argument 'zz'"),
    (_spec("record", "a", "b", name="c"), "kwargs",
     "record(): multiple values for argument 'name'"),
    (_spec("kwonly", 1), "kwargs", "kwonly(): missing a required argument: 'b'"),
    (_spec("posonly", a=1), "kwargs",
     "posonly(): 'a' parameter is positional only, but was passed as a keyword"),
    (_spec("mixed", flag=True), "args", "mixed(): missing a required argument: 'a'"),
])
def test_pool_refuses_calls_that_do_not_bind(spec: dict[str, Any], field: str,
                                             message: str) -> None:
    err = _refusal(_requests(), spec, 3)
    assert err.field == f"tasks[3].{field}"
    assert err.message.startswith(message + "; the task's signature is "), err.message


@pytest.mark.parametrize("spec", [
    _spec("noop"),
    _spec("record", "a", "b"),
    _spec("record", "a", value="b", fail=True),
    _spec("sleep", seconds=0),
    _spec("echo"),
    _spec("echo", 1, 2, 3, kind="x", args=[1]),
    _spec("mixed", 1, 2, 3, flag=True, other=4),
    _spec("kwonly", 1, b=2),
    _spec("posonly", 1, b=3),
    _spec("unreadable", 1, 2, zz=3),  # its signature cannot be read: not checked
    {**_spec("record"), "ref": "tests.support.tasks:record"},  # add_task checked it
    {**_spec("not.registered", 1), "ref": "tests.support.tasks:noop"},
])
def test_pool_accepts_calls_that_bind(spec: dict[str, Any]) -> None:
    req = _requests()
    for _ in range(2):  # the second time from the remembered call shape
        assert req.specs.task(0, spec, 0.0).kind == spec["kind"]


def test_the_no_arguments_shortcut_is_what_the_codec_makes() -> None:
    assert encode_call([], {}) == NO_ARGUMENTS
    assert call_shape(NO_ARGUMENTS) == (0, ())
    assert call_shape(encode_call([1, 2], {"b": 3})) == (2, ("b",))


@pytest.mark.parametrize("payload", [b"", b"\xc1", msgpack.packb([[1]]),
                                     msgpack.packb({"args": [], "kwargs": {}}),
                                     msgpack.packb([{}, []]), msgpack.packb([[], {}, 1])])
def test_a_payload_that_is_not_a_call_is_refused(payload: bytes) -> None:
    err = _refusal(_requests(), {"kind": "record", "payload": payload}, 1)
    assert err.field == "tasks[1].payload"


def test_a_new_manifest_brings_new_checks() -> None:
    """A reload (new template, new manifest) may change a kind's signature."""
    manifest = {"job": {"params": [["a", 1, False]]}}
    req = _requests(manifest)
    req.specs.task(0, _spec("job", 1), 0.0)
    _refusal(req, _spec("job", 1, 2))
    req.pool.manifest = {"job": {"params": [["a", 1, False],
                                            ["b", 1, False]]}}
    req.specs.task(0, _spec("job", 1, 2), 0.0)
    assert _refusal(req, _spec("job", 1)).field == "tasks[0].args"


def test_an_unusable_manifest_entry_is_not_checked() -> None:
    req = _requests({"job": {"params": [["a", "nonsense", False]]}})
    req.specs.task(0, _spec("job", 1, 2, 3), 0.0)
