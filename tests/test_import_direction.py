"""Imports flow one way, between packages and inside ``executor/``.

Between the top-level packages: ``config`` ← ``metrics`` ← ``executor`` ←
``server`` (nothing imports ``server``). Inside ``executor/``: ``wire`` ←
``store`` ← ``pool`` / ``worker`` / ``client``; those three never import
each other, and only ``executor`` itself (its ``__init__``, ``__main__``,
``testing``) may import all of them. Every import in every module counts,
also one inside a function or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("config", "metrics", "executor", "server")

# What each place may import (beside itself and the standard library / dependencies).
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "metrics": {"config"},
    "executor.wire": set(),
    "executor.store": {"executor.wire"},
    "executor.pool": {"config", "metrics", "executor.wire", "executor.store"},
    "executor.worker": {"config", "executor.wire", "executor.store"},
    "executor.client": {"config", "metrics", "executor.wire", "executor.store"},
    "executor": {"config", "metrics", "executor.wire", "executor.store", "executor.pool",
                 "executor.worker", "executor.client"},
    "server": {"config", "metrics", "executor.wire", "executor.store", "executor.pool",
               "executor.worker", "executor.client", "executor"},
}
EXECUTOR_PARTS = ("wire", "store", "pool", "worker", "client")


def place(module: str) -> str:
    """The place of ``module`` in the order above ("executor.pool.fleet" -> "executor.pool")."""
    parts = module.split(".")
    if parts[0] == "executor" and len(parts) > 1 and parts[1] in EXECUTOR_PARTS:
        return f"executor.{parts[1]}"
    return parts[0]


def modules() -> list[tuple[str, Path]]:
    found = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "." in path.stem:
                continue  # config/gunicorn.conf.py: gunicorn's entry point, not a module
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            found.append((".".join(parts), path))
    return found


def imported(module: str, path: Path) -> set[str]:
    """Every project module ``path`` imports, absolute or relative, anywhere in it."""
    names: set[str] = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base = parts[: len(parts) - node.level + (1 if is_pkg else 0)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            names.add(target)
            # ``from executor import pool`` imports executor.pool
            names.update(f"{target}.{a.name}" for a in node.names)
    return {n for n in names if n.split(".")[0] in PACKAGES}


MODULES = modules()


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_flow_one_way(module: str, path: Path) -> None:
    here = place(module)
    all_modules = {m for m, _ in MODULES}
    bad = sorted(name for name in imported(module, path)
                 if name in all_modules and place(name) != here
                 and place(name) not in ALLOWED[here])
    assert not bad, (f"{module} ({here}) imports {bad}: {here} may import only "
                     f"{sorted(ALLOWED[here]) or 'nothing of the project'}")


def test_the_order_catches_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: a store module importing the pool is found."""
    fake = tmp_path / "sqlite.py"
    fake.write_text("from executor.pool.fleet import Fleet\nimport executor.wire.codec\n")
    names = imported("executor.store.sqlite", fake)
    assert "executor.pool.fleet" in names
    assert place("executor.pool.fleet") not in ALLOWED["executor.store"]
