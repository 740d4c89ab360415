"""HTTP load for the kill tests: threads that post tasks and background calls
to a server (``tests.support.chaos``) and remember every answer.

Each thread keeps one keep-alive connection and opens a new one after any
failure, as a client library would. A request that gets no answer (refused,
reset, timed out) is recorded with status 0: the client would send it again.
"""

from __future__ import annotations

import functools
import http.client
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support.chaos import RUNS
from tests.support.procs import Env, ServerHandle, wait_for


@dataclass(frozen=True, slots=True)
class Answer:
    """One request and what came back."""

    route: str  # "tasks" (POST /tasks) or "pair" (POST /pair)
    label: str
    status: int  # 0: no answer
    retry_after: str | None
    body: str
    sent_at: float  # time.time()
    answered_at: float

    @property
    def worker_pid(self) -> int | None:
        """The HTTP worker that answered a pair (its body says), else ``None``."""
        try:
            pid = json.loads(self.body).get("pid") if self.route == "pair" else None
        except (ValueError, AttributeError):
            return None
        return pid if isinstance(pid, int) else None


class Load:
    """``threads`` per route, posting as fast as they are answered until ``stop``."""

    def __init__(self, port: int, tasks_threads: int = 3, pair_threads: int = 3,
                 pause_s: float = 0.0) -> None:
        self.port = port
        self.pause_s = pause_s
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._labels = itertools.count()
        self._threads = [threading.Thread(target=self._post_forever, args=(route,), daemon=True)
                         for route, n in (("tasks", tasks_threads), ("pair", pair_threads))
                         for _ in range(n)]

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        with self._lock:
            return list(self.answers)

    def answered(self) -> list[Answer]:
        """The answers so far."""
        with self._lock:
            return list(self.answers)

    def count(self, keep: Callable[[Answer], bool]) -> int:
        with self._lock:
            return sum(1 for a in self.answers if keep(a))

    def _post_forever(self, route: str) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            label = f"{route}{next(self._labels)}"
            if route == "tasks":
                path, body = "/tasks", {"kind": "chaos_run", "args": [label]}
            else:
                path, body = "/pair", {"label": label}
            sent = time.time()
            status, retry_after, text = 0, None, ""
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
                conn.request("POST", path, json.dumps(body),
                             {"content-type": "application/json"})
                resp = conn.getresponse()
                text = resp.read().decode(errors="replace")
                status, retry_after = resp.status, resp.getheader("retry-after")
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            with self._lock:
                self.answers.append(Answer(route, label, status, retry_after, text, sent,
                                           time.time()))
            if status == 0 or self.pause_s:
                time.sleep(self.pause_s or 0.02)  # refused: do not spin
        if conn is not None:
            conn.close()


@dataclass(frozen=True, slots=True)
class Run:
    """One line of the runs file."""

    event: str  # "start" or "end"
    label: str
    task_id: str
    pid: int
    at: float


def read_runs(trace_dir: Path) -> list[Run]:
    """Every line of the runs file so far (a torn last line is skipped)."""
    path = trace_dir / RUNS
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        parts = line.split(" ")
        if len(parts) == 5:
            runs.append(Run(parts[0], parts[1], parts[2], int(parts[3]), float(parts[4])))
    return runs


def labels_that_ran(trace_dir: Path) -> set[str]:
    """Labels with at least one ``start`` line."""
    return {r.label for r in read_runs(trace_dir) if r.event == "start"}


def expected_labels(answers: list[Answer], excused: set[str] | None = None) -> set[str]:
    """What must run: each task answered 202, both calls of each pair answered
    200, but for the pairs ``excused``."""
    out: set[str] = set()
    for a in answers:
        if a.route == "tasks" and a.status == 202:
            out.add(a.label)
        elif a.route == "pair" and a.status == 200 and a.label not in (excused or ()):
            out.update((f"{a.label}-a", f"{a.label}-b"))
    return out


def start_master(env: Env, within_s: float = 60.0, restart_s: float = 0.5) -> ServerHandle:
    """Start gunicorn on ``env`` as systemd's ``Restart=`` would after a crash:
    again (after ``restart_s``) each time it exits before it is ready, until
    ``/readyz`` answers 200; fail after ``within_s``. A master that cannot
    bind the port yet (old HTTP workers still hold it) exits, and is started
    again."""
    deadline = time.monotonic() + within_s
    while True:
        server = ServerHandle(env, ready=False)
        try:
            wait_for(functools.partial(_ready_or_exited, server),
                     max(1.0, deadline - time.monotonic()), what="gunicorn to be ready or exit")
        except AssertionError:
            server.stop()
            raise AssertionError(f"gunicorn not ready:\n{server.output()[-3000:]}") from None
        if server.popen.poll() is None:
            return server
        server.stop()
        if time.monotonic() + restart_s >= deadline:
            raise AssertionError(f"gunicorn kept exiting:\n{server.output()[-3000:]}")
        time.sleep(restart_s)  # systemd's RestartSec


def _ready_or_exited(server: ServerHandle) -> bool:
    if server.popen.poll() is not None:
        return True
    try:
        return server.http("GET", "/readyz", timeout_s=5)[0] == 200
    except OSError:
        return False
