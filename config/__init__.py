"""offload configuration: the typed settings object and its loader.

Public names: ``Settings``, ``load_settings``, ``ConfigError``, ``run_dir_for``;
``check_reloadable`` says which edits a live reload (HUP) cannot apply.
"""

from config.paths import run_dir_for, socket_path_for
from config.reload import RESTART_ONLY, check_reloadable
from config.settings import ConfigError, Settings, describe, load_settings, redact_url
from config.startup import start_process

__all__ = ["RESTART_ONLY", "ConfigError", "Settings", "check_reloadable", "describe",
           "load_settings", "redact_url", "run_dir_for", "socket_path_for", "start_process"]
