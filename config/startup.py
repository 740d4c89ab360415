"""What every offload process does first: load settings, configure logging."""

from __future__ import annotations

import logging
import sys

from config.settings import ConfigError, Settings, load_settings

LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def start_process(config_path: str | None) -> Settings:
    """Load settings and configure logging at their level.

    A bad configuration ends the process with exit status 2 and the error
    (file, key, value, accepted) on stderr.
    """
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        print(f"offload: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    return settings
