"""Periodic-task schedules: their declaration, and the checks made when they load.

A schedule runs a registered task kind once per *slot*: every ``every_s``
seconds (slots are the multiples of ``every_s`` since the epoch, so every
host computes the same ones), or at the times of a five-field ``cron``
expression in time zone ``tz`` (UTC unless named; DST as Debian's cron
does it: a time skipped by the spring jump runs just after it, a time
repeated in autumn runs once). Cron expressions are parsed by ``cronsim``
(maintained by Healthchecks.io for its cron monitoring, zoneinfo-native).

Schedules come from ``@task(cron=...)`` / ``@task(every_s=...)`` (named after
their kind) and from the ``[schedules.<name>]`` tables of ``offload.toml``.
``parse_schedules`` checks a table; ``check_timing`` the fields both share.
Whether the kind is registered and its arguments fit is checked by the pool,
which alone knows the task code (``executor.pool.schedules``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

CATCH_UP = ("latest", "skip", "all")
"""What a schedule does with slots missed while no pool ran (or its pool stalled)."""
OVERLAP = ("allow", "skip", "queue")
"""What a schedule does when its previous run has not finished."""
DEFAULT_MAX_DELAY_S = 3600.0
"""How late a slot may still run (``catch_up`` "latest" and "all"), by default."""
MAX_DELAY_MAX_S = 604_800.0  # a week: how far back a restarted pool looks for missed slots
MIN_EVERY_S = 1.0
MAX_NAME_CHARS = 200  # the name goes into the slot's idempotency key (256 characters)
TABLE_KEYS = ("kind", "cron", "every_s", "tz", "args", "kwargs", "catch_up", "max_delay_s",
              "overlap")


class ScheduleError(ValueError):
    """A schedule's fields are wrong; the message names the field and what is accepted."""


@dataclass(frozen=True)
class Schedule:
    """One schedule. ``source`` says where it was declared (for messages and ``GET /schedules``)."""

    name: str
    kind: str
    cron: str | None = None
    every_s: float | None = None
    tz: str = "UTC"
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    catch_up: str = "latest"
    max_delay_s: float = DEFAULT_MAX_DELAY_S
    overlap: str = "allow"
    source: str = "offload.toml"

    @property
    def spec(self) -> str:
        """The timing as shown to people: ``"*/5 * * * * (Europe/Paris)"`` or ``"every 30 s"``."""
        if self.cron is not None:
            return self.cron + ("" if self.tz == "UTC" else f" ({self.tz})")
        return f"every {self.every_s:g} s"


def check_timing(cron: object, every_s: object, tz: object, catch_up: object,
                 max_delay_s: object, overlap: object) -> None:
    """Raise ``ScheduleError`` unless exactly one of ``cron`` (a five-field
    expression that parses) and ``every_s`` (a number >= 1) is given, ``tz``
    is a known IANA zone, and the policies are among those accepted."""
    if (cron is None) == (every_s is None):
        raise ScheduleError("give exactly one of 'cron' (a five-field cron expression, e.g. "
                            "\"*/5 * * * *\") and 'every_s' (seconds, >= 1)")
    if cron is not None:
        if not isinstance(cron, str) or len(cron.split()) != 5:
            raise ScheduleError(f"'cron' has value {cron!r}; accepted: a cron expression of "
                                "five fields (minute hour day-of-month month day-of-week), "
                                "e.g. \"*/5 * * * *\"")
        try:
            CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as exc:
            raise ScheduleError(f"'cron' has value {cron!r}, which does not parse ({exc}); "
                                "accepted: five fields (minute hour day-of-month month "
                                "day-of-week), e.g. \"*/5 * * * *\"") from None
    if every_s is not None and (isinstance(every_s, bool) or not isinstance(every_s, int | float)
                                or not math.isfinite(every_s) or every_s < MIN_EVERY_S):
        raise ScheduleError(f"'every_s' has value {every_s!r}; accepted: a number of seconds "
                            f">= {MIN_EVERY_S:g}")
    if not isinstance(tz, str):
        raise ScheduleError(f"'tz' has value {tz!r}; accepted: an IANA time zone name such as "
                            "\"Europe/Paris\" (default \"UTC\")")
    zone(tz)
    if tz != "UTC" and cron is None:
        raise ScheduleError("'tz' applies to 'cron' only ('every_s' slots are the same in "
                            "every time zone); remove it")
    if catch_up not in CATCH_UP:
        raise ScheduleError(f"'catch_up' has value {catch_up!r}; accepted: one of: "
                            + ", ".join(CATCH_UP))
    if isinstance(max_delay_s, bool) or not isinstance(max_delay_s, int | float) \
            or not 0 <= max_delay_s <= MAX_DELAY_MAX_S:
        raise ScheduleError(f"'max_delay_s' has value {max_delay_s!r}; accepted: a number of "
                            f"seconds from 0 to {MAX_DELAY_MAX_S:g}")
    if overlap not in OVERLAP:
        raise ScheduleError(f"'overlap' has value {overlap!r}; accepted: one of: "
                            + ", ".join(OVERLAP))


def zone(tz: str) -> ZoneInfo:
    """The time zone named ``tz``; raises ``ScheduleError`` for an unknown name."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"'tz' has value {tz!r}, which is no known time zone; accepted: an "
                            "IANA name such as \"Europe/Paris\" or \"UTC\"") from None


def parse_schedules(raw: object, where: str) -> tuple[Schedule, ...]:
    """The schedules of an ``offload.toml`` ``schedules`` table (``where``: the
    file, for messages). Raises ``ScheduleError`` naming the schedule, the key
    and what is accepted."""
    if not isinstance(raw, dict):
        raise ScheduleError(f"{where}: key 'schedules' must be a table of schedules, e.g. "
                            "[schedules.nightly] with kind = \"build_report\" and "
                            "cron = \"0 3 * * *\"")
    out = []
    for name, table in raw.items():
        out.append(_parse_one(name, table, f"{where}: schedule {name!r}"))
    return tuple(out)


def _parse_one(name: str, table: object, where: str) -> Schedule:
    if not 0 < len(name) <= MAX_NAME_CHARS or not name.isprintable():
        raise ScheduleError(f"{where}: a schedule's name must be 1 to {MAX_NAME_CHARS} "
                            "printable characters")
    if not isinstance(table, dict):
        raise ScheduleError(f"{where} must be a table with 'kind' and 'cron' or 'every_s'")
    unknown = sorted(set(table) - set(TABLE_KEYS))
    if unknown:
        raise ScheduleError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                            f"accepted keys: {', '.join(TABLE_KEYS)}")
    kind = table.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ScheduleError(f"{where}: 'kind' has value {kind!r}; accepted: the name of a "
                            "registered task kind")
    args, kwargs = table.get("args", []), table.get("kwargs", {})
    if not isinstance(args, list):
        raise ScheduleError(f"{where}: 'args' has value {args!r}; accepted: a list")
    if not isinstance(kwargs, dict):
        raise ScheduleError(f"{where}: 'kwargs' has value {kwargs!r}; accepted: a table")
    return _timed(name, kind, table, where, where.split(": ")[0], tuple(args), dict(kwargs))


def code_schedule(kind: str, raw: object) -> Schedule:
    """The schedule of ``@task(cron=...)`` / ``@task(every_s=...)`` on ``kind``
    (``raw``: its manifest entry), named after the kind. Raises
    ``ScheduleError`` naming it."""
    where = f"schedule {kind!r} (@task on kind {kind!r})"
    if not isinstance(raw, dict):
        raise ScheduleError(f"{where}: not a schedule: {raw!r}")
    return _timed(kind, kind, raw, where, "@task")


def _timed(name: str, kind: str, fields: dict[str, Any], where: str, source: str,
           args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Schedule:
    """The schedule ``name`` of ``kind`` with the timing fields of ``fields``
    (defaults for those missing), checked by ``check_timing``; a
    ``ScheduleError`` is prefixed with ``where``."""
    values: dict[str, Any] = {k: fields.get(k, d) for k, d in (
        ("cron", None), ("every_s", None), ("tz", "UTC"), ("catch_up", "latest"),
        ("max_delay_s", DEFAULT_MAX_DELAY_S), ("overlap", "allow"))}
    try:
        check_timing(**values)
    except ScheduleError as exc:
        raise ScheduleError(f"{where}: {exc}") from None
    every_s = values["every_s"]
    return Schedule(name=name, kind=kind, cron=values["cron"],
                    every_s=None if every_s is None else float(every_s), tz=values["tz"],
                    args=args, kwargs={} if kwargs is None else kwargs,
                    catch_up=values["catch_up"], max_delay_s=float(values["max_delay_s"]),
                    overlap=values["overlap"], source=source)
