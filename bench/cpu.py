"""Where the CPU went during a bench phase: per role, from ``/proc/<pid>/stat``.

``snapshot(server)`` reads the user+system CPU time of every process in the
server's session; ``per_unit(before, after, units)`` turns two snapshots into
microseconds per request (or per task) for each role: ``http`` (gunicorn's
workers), ``pool``, ``executors`` (and the template), plus ``machine``, the
whole host's busy time from ``/proc/stat``, which includes the load generator
and the kernel.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.support.procs import ServerHandle, session_pids, wait_for

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _role(pid: int, master: int) -> str | None:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if pid == master:
        return "master"
    if b"executor.worker.template" in cmd:
        return "executors"
    if b"executor" in cmd:
        return "pool"
    if b"executor.pool.keeper" in cmd:
        return "keeper"
    return "http" if any(b"gunicorn" in c for c in cmd) else None


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def _machine_busy_s() -> float:
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = ticks[:7]
    return (user + nice + system + irq + softirq) * _TICK_S


def snapshot(server: ServerHandle) -> dict[int | str, tuple[str, float]]:
    """CPU seconds so far of each process in the server's session, by pid."""
    out: dict[int | str, tuple[str, float]] = {"machine": ("machine", _machine_busy_s())}
    for pid in session_pids(server.pid):
        role = _role(pid, server.pid)
        if role is not None:
            out[pid] = (role, _cpu_s(pid))
    return out


def per_unit(before: dict[int | str, tuple[str, float]],
             after: dict[int | str, tuple[str, float]], units: int) -> dict[str, float]:
    """Microseconds of CPU per unit, by role, between two snapshots.

    Processes that started meanwhile count from zero; those that ended are lost.
    """
    spent: dict[str, float] = {}
    for key, (role, seconds) in after.items():
        spent[role] = spent.get(role, 0.0) + seconds - before.get(key, (role, 0.0))[1]
    return {role: s * 1e6 / max(1, units) for role, s in spent.items()
            if role in ("http", "pool", "executors", "machine")}


def wait_quiet(server: ServerHandle, role: str = "http", window_s: float = 0.3,
               max_busy: float = 0.05, timeout_s: float = 300.0) -> float:
    """Wait until ``role``'s processes together use less than ``max_busy`` of a
    core over ``window_s`` (work left behind by a load, such as Starlette's
    background calls still queued in its thread pool, is done). Returns the
    seconds waited."""
    def quiet() -> bool:
        before = snapshot(server)
        time.sleep(window_s)
        return per_unit(before, snapshot(server), 1).get(role, 0.0) / 1e6 / window_s < max_busy

    start = time.monotonic()
    wait_for(quiet, timeout_s, interval_s=0, what=f"the {role} processes to go idle")
    return time.monotonic() - start - window_s


def describe(costs: dict[str, float], unit: str) -> str:
    """One line: ``CPU per request: http 187 µs, pool 64 µs, ...``."""
    order = ("http", "pool", "executors", "machine")
    parts = [f"{r} {costs[r]:.0f} µs" for r in order if r in costs]
    return f"CPU per {unit}: " + ", ".join(parts) + " (machine: all processes, wrk included)"
