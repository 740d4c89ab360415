"""A package's ``__init__.py`` is its map: its docstring names every module
of the package (``shared/STYLE.md``, habit 2), so a newcomer finds each file
from it. Checked for the packages inside ``executor/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPED = ("executor", "executor/wire", "executor/store", "executor/store/sqlite",
          "executor/store/postgres", "executor/pool", "executor/worker", "executor/client",
          "executor/testing")


def unnamed(package: Path) -> list[str]:
    """The modules and subpackages of ``package`` its ``__init__`` docstring does
    not name as ````name```` (or ````name/```` for a subpackage)."""
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    parts = {p.stem for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")}
    parts |= {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    return sorted(name for name in parts
                  if f"``{name}``" not in doc and f"``{name}/``" not in doc)


@pytest.mark.parametrize("package", MAPPED)
def test_the_package_map_names_every_module(package: str) -> None:
    assert unnamed(ROOT / package) == []


def test_a_module_left_out_of_the_map_is_found(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text('"""The map.\n\n- ``named``: here."""\n')
    for name in ("named", "forgotten", "__main__"):
        (tmp_path / f"{name}.py").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "__init__.py").write_text("")
    assert unnamed(tmp_path) == ["forgotten", "sub"]
