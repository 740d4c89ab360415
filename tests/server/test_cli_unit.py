"""``offload``'s parts that need no server: what it imports, and its parser."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from server.cli import EXIT_UNAVAILABLE, main


def test_it_never_imports_task_code() -> None:
    # The server's task modules are named in its environment; the command
    # must not import them (it only talks HTTP), even where they exist.
    env = {**os.environ, "OFFLOAD_TASK_MODULES": "tests.support.tasks,examples.tasks"}
    code = ("import sys\nfrom server.cli import main\n"
            "rc = main(['--url', 'http://127.0.0.1:9', 'check'])\n"
            "print(rc, [m for m in sys.modules if m.startswith(('tests.', 'examples'))])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split(" ", 1)
    assert int(out[0]) == EXIT_UNAVAILABLE
    assert json.loads(out[1].replace("'", '"')) == []


@pytest.mark.parametrize("argv", [["tasks"], ["tasks", "get"], ["check", "--nope"],
                                  ["-o", "yaml", "status"], ["tasks", "retry", "x", "--failed"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert capsys.readouterr().out == ""  # messages go to stderr
