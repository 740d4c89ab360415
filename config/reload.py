"""What a live reload (``kill -HUP``) cannot change.

The pool opens its store and its socket once, and the HTTP workers find
that socket through the run directory, which is named after the store (and,
for a shared store, the ``bind`` address) unless ``run_dir`` is set. An edit
to one of those, applied live, would leave new HTTP workers looking for a
pool that is not there, or a pool writing to a store the file no longer
names. So such a reload is refused as a whole, as a bad edit is: the server
keeps running on the settings it had, and the message says to restart.
"""

from __future__ import annotations

from config.paths import run_dir_for
from config.settings import ConfigError, Settings

RESTART_ONLY = ("store_url", "run_dir")
"""Settings that take effect only when the server (its pool) restarts."""


def check_reloadable(running: Settings, new: Settings) -> None:
    """Raise ``ConfigError`` naming the key if ``new`` cannot replace
    ``running`` without a restart; return if it can."""
    for key in RESTART_ONLY:
        if getattr(running, key) != getattr(new, key):
            raise ConfigError(f"key {key!r} changed, and the pool keeps its store and socket "
                              "until it restarts; restart the server to apply it")
    if run_dir_for(running) != run_dir_for(new):
        raise ConfigError("key 'bind' changed, and with a shared store the run directory is "
                          "named after it; restart the server to apply it (or set run_dir)")
