"""``offload``: the command line of a running offload server (a console script).

It talks to the server over HTTP only (``server.Client``) and never imports
task code, so it runs anywhere the API is reachable, and in probes.

- ``main``: the parser, global options (``--url``/``OFFLOAD_URL``,
  ``--token``/``OFFLOAD_AUTH_TOKEN``, ``--output``, ``--version``), and
  how errors become exit codes (``EXIT_*``).
- ``output``: tables and JSON (JSON only on stdout; messages on stderr).
- ``status``: ``offload status [--watch]``.
- ``tasks``: ``offload tasks list|get|submit|cancel|retry``.
- ``check``: ``offload check [--ready]`` for liveness and readiness probes.
- ``run``: ``offload serve`` (gunicorn with offload's config) and ``offload pool``.
"""

from server.cli.main import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    main,
)

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_TIMEOUT", "EXIT_UNAVAILABLE", "EXIT_USAGE", "main"]
