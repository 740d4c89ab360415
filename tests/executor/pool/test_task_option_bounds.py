"""A kind whose ``@task`` option is outside its setting's bounds stops the
pool at start, naming the kind and the option: otherwise the pool would
refuse every task of that kind, or (before) run each into a 1 ns timeout."""

from __future__ import annotations

from tests.support.procs import PYTHON, Env, Proc, wait_for


def test_a_kind_with_an_out_of_bounds_timeout_stops_the_pool_at_start(env: Env) -> None:
    env.write_config(task_modules=["tests.executor.bad_option_tasks"])
    pool = Proc([PYTHON, "-m", "executor", "--config", str(env.config_path)], env, "pool")
    try:
        wait_for(lambda: pool.popen.poll() is not None, 60, what="the pool to exit")
        assert pool.popen.returncode != 0
        assert ("task kind 'too_short' (tests.executor.bad_option_tasks.too_short): "
                "@task(timeout_s=1e-09): must be a number of seconds from 0.001 to 604800"
                ) in pool.output()
    finally:
        pool.stop()
