"""A task module with a kind whose option is out of its setting's bounds
(``default_timeout_s`` cannot go under 0.001 s)."""

from executor import task


@task(name="too_short", timeout_s=1e-9)
def too_short() -> None:
    pass
