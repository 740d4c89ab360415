"""Template generations: the pool's current template process, the one that
replaces it on reload, and a new one when it dies.

Each ``start`` loads the task code in a template of the next generation;
``use`` makes it current, and the one it replaces drains (forks no more and
exits once its executors are gone). A current template that dies is
replaced at once, with back-off while task code fails to import.

While a dead template's successor loads, ``manifest`` is the dead one's
(issue 14): the same modules are being imported again, and a submission of a
registered kind must be stored (it runs once executors are back), not
refused as unknown.

The executors are not this module's: it passes on what templates report of
them (``SPAWNED``, ``EXITED``) and says whose executors must stop, through
``GenerationsOwner`` (the ``Fleet``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from config import Settings
from executor.pool.templates import TemplateProcess
from executor.wire.protocol import FrameType

log = logging.getLogger("offload.pool")

RESTART_DELAY_S = 0.1  # first wait after a replacement template failed to load
RESTART_DELAY_MAX_S = 10.0  # the wait doubles up to this


class GenerationsOwner(Protocol):
    """What the template generations need from the executors' side."""

    @property
    def settings(self) -> Settings:
        """The current settings (``task_modules`` is what a template imports)."""

    @property
    def stopping(self) -> bool:
        """The pool is stopping: a template that dies is not replaced."""

    def spawned(self, slot_id: int, pid: int) -> None:
        """A template forked the executor of ``slot_id``; its pid is ``pid``."""

    def exited(self, pid: int, status: str) -> None:
        """A template reaped its executor ``pid``; ``status`` is how it ended
        (``"exit 0"``, ``"SIGSEGV"``, ...)."""

    def stop_executors(self, reason: str, of: Callable[[int], bool]) -> None:
        """Stop every executor whose template generation ``of`` accepts."""

    def top_up(self) -> None:
        """Start executors of the current generation up to the settings' number."""


class TemplateGenerations:
    """The current template (``current``), those draining, and those exited
    but not yet reaped. Lives on the pool's event loop."""

    def __init__(self, owner: GenerationsOwner) -> None:
        self.owner = owner
        self.current: TemplateProcess | None = None
        self.draining: list[TemplateProcess] = []  # replaced: exit once their executors are gone
        self._exited: list[TemplateProcess] = []  # socket closed, not yet reaped
        self._last_manifest: dict[str, dict[str, Any]] = {}  # a dead one's, while it is replaced
        self._generation = 0

    @property
    def generation(self) -> int:
        """The current template's generation, or -1 while there is none."""
        return self.current.generation if self.current is not None else -1

    @property
    def manifest(self) -> dict[str, dict[str, Any]]:
        """Registered kinds and their options, from the current template; while
        a dead template's successor loads, the dead one's (see the module's
        docstring)."""
        return self.current.manifest if self.current is not None else self._last_manifest

    async def start(self) -> TemplateProcess:
        """Start a template of the next generation and wait until it has loaded
        the task code (raises ``RuntimeError`` if that code does not import).
        It is not current until ``use``."""
        self._generation += 1
        tpl = TemplateProcess(self._generation, list(self.owner.settings.task_modules),
                              self._on_message, self._on_exit)
        await tpl.start()
        log.info("task code loaded (generation %d): %d kind(s)", tpl.generation,
                 len(tpl.manifest))
        return tpl

    def use(self, tpl: TemplateProcess) -> None:
        """Make ``tpl`` current: the previous template drains, executors of any
        other generation finish their tasks and leave, and the new
        generation's are started."""
        old, self.current = self.current, tpl
        if old is not None:
            old.drain()
            self.draining.append(old)
        self.owner.stop_executors("reload", lambda generation: generation != tpl.generation)
        self.owner.top_up()

    def _on_message(self, tpl: TemplateProcess, ftype: FrameType, body: dict[str, Any]) -> None:
        if ftype == FrameType.SPAWNED:
            self.owner.spawned(body["slot"], body["pid"])
        elif ftype == FrameType.EXITED:
            self.owner.exited(body["pid"], body["status"])

    def _on_exit(self, tpl: TemplateProcess) -> None:
        # Its socket closed; the process may take a moment more to exit:
        # ``reap`` collects it then (no zombie left behind).
        self._exited.append(tpl)
        if tpl in self.draining:
            self.draining.remove(tpl)
            return
        if tpl is self.current and not self.owner.stopping:
            log.error("the template process died: starting a new one")
            self._last_manifest = tpl.manifest
            self.owner.stop_executors("crash", lambda generation: generation == tpl.generation)
            self.current = None
            asyncio.get_running_loop().create_task(self._restart())

    async def _restart(self) -> None:
        delay = RESTART_DELAY_S
        while not self.owner.stopping and self.current is None:
            try:
                self.current = await self.start()
            except RuntimeError as exc:
                log.error("%s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESTART_DELAY_MAX_S)
        self.owner.top_up()

    def reap(self) -> None:
        """Collect the exit status of templates that exited (call it often)."""
        for tpl in list(self.draining):
            tpl.reap()
        self._exited = [tpl for tpl in self._exited if not tpl.reap()]

    def close(self) -> None:
        """Stop listening to every template (they exit on EOF)."""
        for tpl in [self.current, *self.draining]:
            if tpl is not None:
                tpl.close()
