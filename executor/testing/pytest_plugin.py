"""pytest fixtures for apps that use offload; loaded by pytest through
offload's ``pytest11`` entry point (``pyproject.toml``), so they need no
import:

- ``offload_inline``: the test runs inside ``executor.testing.inline()``;
  the fixture's value is the mode (``.calls``, ``.failures``).
- ``offload_fake``: the test runs inside ``executor.testing.fake()``;
  the value is the recorder (``.calls``, ``.run_all()``, ``.clear()``).

Nothing is imported or switched on until a test asks for a fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from executor.testing.modes import Fake, Inline


@pytest.fixture
def offload_inline() -> Iterator[Inline]:
    """Hand-offs run their calls at once, in this process (``executor.testing.inline()``)."""
    from executor.testing.modes import inline

    with inline() as mode:
        yield mode


@pytest.fixture
def offload_fake() -> Iterator[Fake]:
    """Hand-offs record their calls (``executor.testing.fake()``); ``.run_all()`` runs them."""
    from executor.testing.modes import fake

    with fake() as mode:
        yield mode
