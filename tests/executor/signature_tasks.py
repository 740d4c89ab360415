"""Task kinds with every kind of parameter, for the call-signature tests
(task module ``tests.executor.signature_tasks``, next to ``tests.support.tasks``)."""

from __future__ import annotations

from executor import task


@task(name="kwonly")
def kwonly(a: object, *, b: object, c: object = 1) -> list[object]:
    """A keyword-only parameter without a default."""
    return [a, b, c]


@task(name="posonly")
def posonly(a: object, /, b: object = 2) -> list[object]:
    """A positional-only parameter."""
    return [a, b]


@task(name="mixed")
def mixed(a: object, *rest: object, flag: bool = False, **extra: object) -> dict[str, object]:
    """*args and **kwargs after a required parameter."""
    return {"a": a, "rest": list(rest), "flag": flag, "extra": extra}


@task(name="type_error_inside", max_retries=1, retry_backoff_s=0.05)
def type_error_inside(x: object) -> None:
    """Binds, then raises TypeError in its body: retried like any exception."""
    raise TypeError(f"the body cannot use {x!r}")


@task(name="unreadable")
def unreadable(*args: object) -> int:
    """A task whose signature cannot be read: its calls are not checked."""
    return len(args)


setattr(unreadable, "__signature__", "not a signature")  # noqa: B010 - what inspect reads


@task(name="posonly_kwargs_type_error", max_retries=1, retry_backoff_s=0.05)
def posonly_kwargs_type_error(a: object = 0, /, **kw: object) -> None:
    """Called with ``a=`` by keyword (it goes to ``**kw``, as CPython binds it,
    though ``Signature.bind`` refuses it), then raises TypeError in its body."""
    raise TypeError(f"the body cannot use {kw!r}")
