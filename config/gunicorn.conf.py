"""gunicorn configuration for offload: ``gunicorn -c config/gunicorn.conf.py``.

Every value comes from offload's settings (``offload.toml`` at
$OFFLOAD_CONFIG or config/offload.toml, then ``OFFLOAD_*`` variables). The
hooks start and supervise the task pool next to the HTTP workers. On
``kill -HUP`` gunicorn re-executes this file: a bad edit, or a run directory
that is no longer private, is refused with a logged error and the server
keeps its running settings.
"""

import os
import sys

# Make the project importable when gunicorn is started from its directory.
sys.path.insert(0, os.getcwd())

from config.paths import run_dir_for
from server.supervision import supervision

_sup = supervision()
# Also makes the run directory private; on HUP a refused file or an unsafe
# run directory leaves the running settings in place.
_settings = _sup.load()

# Workers build the app from the settings above, never from the file: a bad
# edit must not stop a replacement worker from booting.
wsgi_app = "server.app:create_worker_app()"
bind = [_settings.bind]
workers = _settings.workers
# "asgi" is gunicorn's asgi worker with a deadline on request heads
# (http_header_timeout_s) and JSON bodies on the errors gunicorn answers
# itself: server/worker.py says how and why.
worker_class = ("server.worker.OffloadWorker" if _settings.worker_class == "asgi"
                else _settings.worker_class)
asgi_loop = "uvloop"
timeout = int(_settings.http_timeout_s)
max_requests = _settings.http_max_requests
max_requests_jitter = _settings.http_max_requests // 10
graceful_timeout = int(_settings.graceful_timeout_s)
keepalive = 5
loglevel = _settings.log_level
accesslog = None
proc_name = "offload"
# gunicorn's control socket (gunicornc) lives beside the pool socket, so two
# servers on one host never share it.
control_socket = os.path.join(run_dir_for(_settings), "gunicorn.ctl")

on_starting = _sup.on_starting
on_reload = _sup.on_reload
post_fork = _sup.post_fork
post_worker_init = _sup.post_worker_init
when_ready = _sup.when_ready
on_exit = _sup.on_exit
