"""The README's configuration table matches the settings declared in config/."""

from __future__ import annotations

from pathlib import Path

from config import describe

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented_with_its_default() -> None:
    for row in describe():
        line = (f"| `{row['name']}` | `{row['env']}` | `{row['default']}` | "
                f"{row['accepted']} |")
        assert line in README, f"README configuration table is out of date for {row['name']}"


def test_readme_gives_the_two_commands() -> None:
    assert "make run" in README and "make test" in README
