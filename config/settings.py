"""offload's settings: declared once, as data, validated at load.

Every setting is a field of the frozen ``Settings`` dataclass with its type,
default, help text and accepted range in the field's metadata. The
environment variable is always ``OFFLOAD_`` + the upper-cased name.
Precedence: defaults < ``offload.toml`` < ``OFFLOAD_*`` environment.

Loading never half-succeeds: an unknown key, a value of the wrong type or
out of range raises ``ConfigError`` naming the file (or variable), the key,
the value and what is accepted. So does ``max_result_bytes`` above half of
``max_frame_bytes`` (a result travels in one frame beside the rest of its
record, and a frame over the limit is refused by its reader). An
``OFFLOAD_*`` variable that is no setting but looks like a misspelt one
(``OFFLOAD_EXECUTOR``) is logged as a warning naming the one meant; other
``OFFLOAD_*`` variables are left alone (they may be the application's).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.schedules import Schedule, ScheduleError, parse_schedules

DEFAULT_CONFIG_PATH = "config/offload.toml"
ENV_PREFIX = "OFFLOAD_"
log = logging.getLogger("offload.config")
# gunicorn's own "asgi" worker (with its C parser, gunicorn_h1c) is the
# default. POST /tasks measured a tie with uvicorn's worker (2,736 vs 2,732/s,
# mean of 3 alternating rounds, wrk -c64), but on kill -HUP uvicorn's worker
# reset connections while old workers shut down (2 of 8 test runs), gunicorn's
# never (0 of 8). Live reload without errors decides.
WORKER_CLASSES = ("asgi", "uvicorn_worker.UvicornWorker")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# Bounds shared by a setting and the per-kind (``@task``) and per-submission
# (``POST /tasks``, the pool's ``submit``) values it is the default of: one
# declaration, so no path accepts what another refuses.
MIN_TIMEOUT_S = 0.001
"""The shortest soft time limit of a task: a millisecond. Shorter, a task
could only time out, and each timeout replaces an executor."""
MAX_TIMEOUT_S = 604_800.0
"""The longest soft time limit of a task: a week (the executor's timer
cannot take absurd values)."""
MAX_RETRIES = 100
"""The most retries a task may have: beyond it a poison task would loop for
days of back-off."""


class ConfigError(Exception):
    """A setting could not be loaded; the message says where and what is accepted."""


def _setting(default: Any, help: str, *, min: float | None = None,
             max: float | None = None, choices: tuple[str, ...] | None = None) -> Any:
    meta = {"help": help, "min": min, "max": max, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """All of offload's settings. Build with ``load_settings()``, not by hand."""

    bind: str = _setting("127.0.0.1:8000", "host:port (or unix:/path) the HTTP server listens on")
    workers: int = _setting(2, "number of HTTP worker processes", min=1)
    worker_class: str = _setting(
        "asgi", "gunicorn worker class for HTTP workers",
        choices=WORKER_CLASSES,
    )
    app: str = _setting(
        "", "your ASGI app as module:attribute, served beside offload's routes; empty = none"
    )
    executors: int = _setting(2, "number of executor processes running tasks (the minimum "
                              "kept running; see executors_max)", min=1)
    # 32: the default that met 300 def tasks/s of 50 ms waits on this 2-core
    # host (bench/wait_bench.py); see the README, "Sizing executors".
    executors_max: int = _setting(
        32, "most executor processes the pool grows to while due tasks wait and every "
        "executor is full (a value below executors counts as executors)", min=1,
    )
    executor_idle_s: float = _setting(
        10.0, "an executor above the executors minimum that ran nothing for this long is "
        "stopped", min=0.0,
    )
    async_concurrency: int = _setting(
        100, "how many async def tasks may run at once in one executor, unless set per kind "
        "with @task(concurrency=N)", min=1,
    )
    task_modules: list[str] = _setting(
        [], "importable modules whose @task functions may be run (list)"
    )
    store_url: str = _setting(
        "sqlite:///offload.db", "where tasks are stored: sqlite:///path/to/file.db (one "
        "host), or postgresql://user:password@host:port/dbname shared by several hosts "
        "(any libpq URI; the password may come from PGPASSWORD instead)"
    )
    lease_s: float = _setting(
        30.0, "a claimed task stays this pool's for this long unless renewed (every "
        "lease_s / 3); on a shared store a dead host's tasks run elsewhere after about "
        "this long, and a pool that cannot renew for this long kills its running tasks",
        min=0.5, max=3600.0,
    )
    run_dir: str = _setting(
        "", "private directory (0700) for the pool socket; empty = /tmp/offload-<uid>/<hash>"
    )
    auth_token: str = _setting("", "bearer token required on offload's routes but /healthz "
                               "(your app's routes keep their own auth); empty = off")
    max_body_bytes: int = _setting(1_048_576, "largest HTTP request body accepted", min=1)
    max_frame_bytes: int = _setting(8_388_608, "largest frame on the pool socket and pipes",
                                    min=1024)
    # At most half of max_frame_bytes, checked at load (_validate_result_size).
    max_result_bytes: int = _setting(1_048_576, "largest encoded task result kept; at most "
                                     "half of max_frame_bytes", min=64)
    default_max_retries: int = _setting(3, "retries after the first attempt, unless set per kind",
                                        min=0, max=MAX_RETRIES)
    default_timeout_s: float = _setting(300.0, "soft time limit of a task, unless set per kind",
                                        min=MIN_TIMEOUT_S, max=MAX_TIMEOUT_S)
    kill_grace_s: float = _setting(
        5.0, "seconds past the soft limit before the executor is killed (hard limit)", min=0.0
    )
    retry_backoff_s: float = _setting(1.0, "base of the exponential retry back-off", min=0.0)
    retry_backoff_max_s: float = _setting(300.0, "cap of the retry back-off", min=0.0)
    max_tasks_per_executor: int = _setting(
        10_000, "recycle an executor after about this many tasks (0 = never)", min=0
    )
    max_memory_mb: int = _setting(
        1024, "recycle an executor whose resident memory passes this after a task (0 = off)",
        min=0,
    )
    memory_limit_mb: int = _setting(
        0, "hard address-space limit per executor; a task passing it fails 'memory' (0 = off)",
        min=0,
    )
    executor_nice: int = _setting(
        10, "how much lower the executors' CPU priority is than the HTTP workers' and the "
        "pool's (added to their nice value; 0 = the same)", min=0, max=19,
    )
    graceful_timeout_s: float = _setting(
        30.0, "on stop, how long running tasks may finish before they are killed", min=0.0
    )
    http_timeout_s: float = _setting(60.0, "gunicorn worker timeout", min=1.0)
    http_header_timeout_s: float = _setting(
        5.0, "a new connection's request line and headers must all arrive within this many "
        "seconds, or it is answered 408 and closed (worker_class asgi)", min=0.1, max=3600.0,
    )
    http_max_requests: int = _setting(
        0, "restart an HTTP worker after about this many requests (0 = never)", min=0
    )
    result_ttl_s: float = _setting(
        604_800.0, "finished task records are purged after this many seconds", min=1.0
    )
    long_poll_max_s: float = _setting(60.0, "longest ?wait= accepted by GET /tasks/{id}",
                                      min=0.0, max=3600.0)
    log_level: str = _setting("info", "log level of every process", choices=LOG_LEVELS)
    # A table in offload.toml only (no environment variable): see config.schedules.
    schedules: tuple[Schedule, ...] = field(default=(), metadata={"table": True})

    @property
    def shared_store(self) -> bool:
        """Whether ``store_url`` names a store several hosts share (PostgreSQL)."""
        return self.store_url.startswith(_POSTGRES)

    @property
    def sqlite_path(self) -> str:
        """The database file of a ``sqlite:///`` store URL."""
        return self.store_url[len("sqlite:///"):]


FIELDS: dict[str, dataclasses.Field[Any]] = {
    f.name: f for f in dataclasses.fields(Settings) if not f.metadata.get("table")}
TABLES = ("schedules",)
"""Keys of offload.toml that hold tables, set in the file only (not from the environment)."""


def _type_name(f: dataclasses.Field[Any]) -> str:
    return {"int": "an integer", "float": "a number", "str": "a string",
            "list[str]": "a list of strings", "bool": "true or false"}[str(f.type)]


def _accepted(f: dataclasses.Field[Any]) -> str:
    meta = f.metadata
    if meta["choices"]:
        return "one of: " + ", ".join(meta["choices"])
    text = _type_name(f)
    if meta["min"] is not None and meta["max"] is not None:
        text += f" from {meta['min']:g} to {meta['max']:g}"
    elif meta["min"] is not None:
        text += f" >= {meta['min']:g}"
    return text


def _coerce(f: dataclasses.Field[Any], value: Any, from_env: bool) -> Any:
    """Return ``value`` as the field's type, or raise ``ValueError``."""
    kind = str(f.type)
    if kind == "list[str]":
        if from_env and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError
        return value
    if kind == "int":
        if from_env and isinstance(value, str):
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError
    elif kind == "float":
        if from_env and isinstance(value, str):
            value = float(value.strip())
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError
        value = float(value)
        if not math.isfinite(value):  # nan passes every comparison below
            raise ValueError
    elif kind == "str" and not isinstance(value, str):
        raise ValueError
    meta = f.metadata
    if meta["min"] is not None and value < meta["min"]:
        raise ValueError
    if meta["max"] is not None and value > meta["max"]:
        raise ValueError
    if meta["choices"] and value not in meta["choices"]:
        raise ValueError
    return value


_POSTGRES = ("postgresql://", "postgres://")


def _validate_store_url(url: str, where: str) -> None:
    """``where`` names the value's origin: ``"<file>: key 'store_url'"`` or the variable."""
    if url.startswith(_POSTGRES) or (url.startswith("sqlite:///")
                                     and len(url) > len("sqlite:///")):
        return
    raise ConfigError(f"{where} has value {_shown('store_url', url)}; accepted: "
                      "sqlite:///path/to/file.db or postgresql://user:password@host:port/dbname")


def _validate_result_size(settings: Settings, origins: Mapping[str, str]) -> None:
    """Refuse a ``max_result_bytes`` over half of ``max_frame_bytes``, blaming
    whichever of the two was set (``origins``: name -> where it was set)."""
    frame, result = settings.max_frame_bytes, settings.max_result_bytes
    if result <= frame // 2:
        return
    if "max_result_bytes" in origins or "max_frame_bytes" not in origins:
        where = origins.get("max_result_bytes", "the default of key 'max_result_bytes'")
        raise ConfigError(
            f"{where} has value {result!r}; accepted: an integer from 64 to {frame // 2} "
            f"(half of max_frame_bytes = {frame}: a result is sent in one frame with its "
            f"record)"
        )
    raise ConfigError(
        f"{origins['max_frame_bytes']} has value {frame!r}; accepted: an integer >= "
        f"{2 * result} (twice max_result_bytes = {result}: a result is sent in one frame "
        f"with its record)"
    )


def _warn_misspelt(env: Mapping[str, str]) -> None:
    known = [ENV_PREFIX + name.upper() for name in FIELDS] + ["OFFLOAD_CONFIG"]
    for var in env:
        if var.startswith(ENV_PREFIX) and var not in known:
            close = difflib.get_close_matches(var, known, n=1, cutoff=0.85)
            if close:
                log.warning("environment variable %s is not an offload setting and is "
                            "ignored; did you mean %s?", var, close[0])


_SECRETS = frozenset({"auth_token"})


def _shown(key: str, value: object) -> str:
    """``value`` as a config error shows it: a secret's only as its type, and
    a URL without the password in it, since these messages go to logs."""
    if key in _SECRETS:
        return f"(a {type(value).__name__}, not shown)"
    if isinstance(value, str) and key.endswith("_url"):
        return repr(redact_url(value))
    return repr(value)


def redact_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part (and any
    ``password=`` parameter) replaced by ``***``: for logs and messages."""
    scheme, sep, rest = url.partition("://")
    if sep:
        auth, at, host = rest.rpartition("@")
        if at and ":" in auth:
            rest = auth.split(":", 1)[0] + ":***@" + host
        url = scheme + sep + rest
    head, q, query = url.partition("?")
    if q:
        query = "&".join("password=***" if part.lower().startswith("password=") else part
                         for part in query.split("&"))
    return head + q + query


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load settings from ``path`` (default ``$OFFLOAD_CONFIG`` or config/offload.toml).

    A missing default file is not an error (the defaults apply); a missing
    file named explicitly is. Raises ``ConfigError``.
    """
    env = os.environ if environ is None else environ
    explicit = path is not None or "OFFLOAD_CONFIG" in env
    cfg_path = Path(path if path is not None else env.get("OFFLOAD_CONFIG", DEFAULT_CONFIG_PATH))
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}  # setting -> where it was set, for errors across keys
    if cfg_path.is_file():
        try:
            raw = tomllib.loads(cfg_path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{cfg_path}: cannot read the file: {exc}") from exc
        if "schedules" in raw:
            try:
                values["schedules"] = parse_schedules(raw.pop("schedules"), str(cfg_path))
            except ScheduleError as exc:
                raise ConfigError(str(exc)) from None
        for key, value in raw.items():
            f = FIELDS.get(key)
            if f is None:
                raise ConfigError(
                    f"{cfg_path}: unknown key {key!r}; accepted keys: "
                    f"{', '.join([*FIELDS, *TABLES])}"
                )
            try:
                values[key] = _coerce(f, value, from_env=False)
                origins[key] = f"{cfg_path}: key {key!r}"
            except ValueError:
                raise ConfigError(
                    f"{cfg_path}: key {key!r} has value {_shown(key, value)}; "
                    f"accepted: {_accepted(f)}"
                ) from None
    elif explicit:
        raise ConfigError(f"{cfg_path}: configuration file not found (from OFFLOAD_CONFIG)")
    for name, f in FIELDS.items():
        var = ENV_PREFIX + name.upper()
        if var in env:
            try:
                values[name] = _coerce(f, env[var], from_env=True)
                origins[name] = f"environment variable {var} (key {name!r})"
            except ValueError:
                raise ConfigError(
                    f"environment variable {var} (key {name!r}) has value "
                    f"{_shown(name, env[var])}; accepted: {_accepted(f)}"
                ) from None
    _warn_misspelt(env)
    settings = Settings(**values)
    _validate_store_url(settings.store_url,
                        origins.get("store_url", f"{cfg_path}: key 'store_url'"))
    _validate_result_size(settings, origins)
    return settings


def describe() -> list[dict[str, str]]:
    """One row per setting (name, env var, default, accepted, help): for docs and --help."""
    rows = []
    for name, f in FIELDS.items():
        factory: Any = f.default_factory
        default = f.default if f.default is not dataclasses.MISSING else factory()
        rows.append({"name": name, "env": ENV_PREFIX + name.upper(), "default": repr(default),
                     "accepted": _accepted(f), "help": f.metadata["help"]})
    return rows
