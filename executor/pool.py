"""The pool: one process that owns the store, the executors and the socket.

It runs an asyncio loop (uvloop) and does four things:

* answers requests from the socket (``executor.requests``), committing every
  submission that arrived in one loop turn in one transaction (group commit);
* claims due tasks and writes them to executors, keeping one more task
  waiting in each executor's pipe (prefetch) so an executor never idles
  between tasks;
* reads ``STARTED``/``PROGRESS``/``DONE`` from executors, applies the retry
  policy and records outcomes (again batched per loop turn);
* notices a dead executor at once (pipe EOF + the template's exit status),
  records why its task failed, puts tasks that only waited in its pipe back
  to ``pending`` without counting an attempt, and spawns a replacement.

Signal handlers only set flags or schedule work on the loop (gunicorn's
habit): SIGTERM/SIGINT -> graceful stop, SIGHUP -> reload settings and task
code, EOF on the lifeline fd -> graceful stop.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import time
import uuid
from typing import Any

from config import ConfigError, Settings, load_settings, socket_path_for
from executor.listener import listen
from executor.protocol import FrameReader, FrameType, ProtocolError, encode
from executor.requests import Requests
from executor.retry import RetryPolicy, should_retry
from executor.slots import ExecutorState, Inflight, Slot
from executor.store import Outcome, Store, TaskRecord, open_store
from executor.templates import TemplateProcess
from metrics import PoolMetrics

log = logging.getLogger("offload.pool")

PREFETCH = 16  # tasks that may wait in an executor's pipe behind the running one
REFILL_AT = 4  # top an executor's pipe up only when this few tasks wait (bigger batches)
STEAL_AFTER_S = 0.1  # take a waiting task back from behind one running this long
LEASE_S = 300.0
TICK_S = 0.05
STATUS_WAIT_S = 1.0  # how long a dead executor's exit status may lag its EOF
DUE_TIMER_MAX_S = 3600.0  # a far-off due time re-arms its timer on the way


class Pool:
    """The dispatcher. Build it in the pool process's ``main``; ``run`` until stopped."""

    def __init__(self, settings: Settings, config_path: str | None = None,
                 lifeline_fd: int | None = None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.lifeline_fd = lifeline_fd
        self.store: Store = open_store(settings.store_url)
        self.metrics = PoolMetrics()
        self.owner = uuid.uuid4().hex
        self.requests = Requests(self)
        self.slots: dict[int, Slot] = {}
        self.by_pid: dict[int, Slot] = {}
        self.inflight: dict[str, tuple[Slot, Inflight]] = {}
        self.template: TemplateProcess | None = None
        self.old_templates: list[TemplateProcess] = []
        self._next_slot = 1
        self._generation = 0
        self._maybe_due = True
        self._next_due: float | None = None
        self._due_timer: asyncio.TimerHandle | None = None
        self._finishes: list[tuple[Outcome, Inflight]] = []
        self._turn_scheduled = False
        self._stopping = False
        self._stopped: asyncio.Event | None = None
        self._reloading = False
        self._last_renew = 0.0
        self._last_purge = 0.0
        self._outbufs: dict[int, bytearray] = {}

    # -- lifecycle -------------------------------------------------------------

    @property
    def manifest(self) -> dict[str, dict[str, Any]]:
        """Registered kinds and their options, from the current template."""
        return self.template.manifest if self.template is not None else {}

    async def run(self) -> None:
        """Serve until a stop is requested, then stop gracefully."""
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        recovered = self.store.recover(time.time(), everything=True)
        if recovered:
            log.warning("recovered %d task(s) left running by a previous pool", len(recovered))
            for rec in recovered:
                if rec.status == "failed":
                    self.metrics.task_failed_attempt(rec.kind, "lost")
                    self.metrics.task_finished(rec.kind, "failed")
        self.template = await self._start_template()
        server = await listen(socket_path_for(self.settings), self.requests.handle,
                              self.settings.max_frame_bytes)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        if self.lifeline_fd is not None:
            loop.add_reader(self.lifeline_fd, self._lifeline_readable)
        self._top_up()
        ticker = loop.create_task(self._tick_forever())
        log.info("pool ready: %d executor(s), socket %s, store %s", self.settings.executors,
                 socket_path_for(self.settings), self.settings.store_url)
        await self._stopped.wait()
        ticker.cancel()
        server.close()
        await self._shutdown()

    def request_stop(self) -> None:
        """Begin a graceful stop (safe to call more than once)."""
        if self._stopped is not None:
            self._stopped.set()

    def _lifeline_readable(self) -> None:
        assert self.lifeline_fd is not None
        try:
            data = os.read(self.lifeline_fd, 64)
        except OSError:
            data = b""
        if not data:
            log.warning("the supervisor is gone: stopping")
            asyncio.get_running_loop().remove_reader(self.lifeline_fd)
            self.request_stop()

    async def _start_template(self) -> TemplateProcess:
        self._generation += 1
        tpl = TemplateProcess(self._generation, list(self.settings.task_modules),
                              self._on_template_message, self._on_template_exit)
        await tpl.start()
        log.info("task code loaded (generation %d): %d kind(s)", tpl.generation,
                 len(tpl.manifest))
        return tpl

    async def reload(self) -> None:
        """Re-read settings and task code; resize and replace executors.

        A bad configuration or task code that fails to import is refused with
        a logged error and the pool keeps running as it was.
        """
        if self._reloading or self._stopping:
            return
        self._reloading = True
        try:
            try:
                new = load_settings(self.config_path)
            except ConfigError as exc:
                log.error("reload refused, keeping the running settings: %s", exc)
                return
            old_settings, self.settings = self.settings, new
            try:
                tpl = await self._start_template()
            except RuntimeError as exc:
                self.settings = old_settings
                log.error("reload refused, keeping the running task code: %s", exc)
                return
            old, self.template = self.template, tpl
            if old is not None:
                old.drain()
                self.old_templates.append(old)
            for slot in list(self.slots.values()):
                if slot.generation != tpl.generation:
                    self._stop_slot(slot, "reload")
            self._top_up()
            log.info("reloaded: %d executor(s), %d kind(s)", new.executors, len(tpl.manifest))
        finally:
            self._reloading = False

    async def _shutdown(self) -> None:
        self._stopping = True
        for slot in list(self.slots.values()):
            self._stop_slot(slot, "shutdown")
        deadline = time.monotonic() + self.settings.graceful_timeout_s
        while self.slots and time.monotonic() < deadline:
            await asyncio.sleep(TICK_S)
        for slot in list(self.slots.values()):
            slot.kill_reason = "shutdown"
            self._kill(slot)
        deadline = time.monotonic() + STATUS_WAIT_S + 1
        while self.slots and time.monotonic() < deadline:
            await asyncio.sleep(TICK_S)
        self._flush_turn()
        for tpl in [self.template, *self.old_templates]:
            if tpl is not None:
                tpl.close()
        self.store.close()
        log.info("pool stopped")

    # -- executors ---------------------------------------------------------------

    def _limits(self) -> dict[str, Any]:
        s = self.settings
        return {"max_tasks": s.max_tasks_per_executor, "max_memory_mb": s.max_memory_mb,
                "memory_limit_mb": s.memory_limit_mb, "max_result_bytes": s.max_result_bytes,
                "max_frame_bytes": s.max_frame_bytes}

    def _live(self) -> list[Slot]:
        gen = self.template.generation if self.template else -1
        return [s for s in self.slots.values() if s.accepting and s.generation == gen]

    def _top_up(self) -> None:
        """Spawn or stop executors until the current generation has the wanted count."""
        if self._stopping or self.template is None:
            return
        live = self._live()
        for _ in range(self.settings.executors - len(live)):
            self._spawn()
        extra = len(live) - self.settings.executors
        if extra > 0:
            for slot in sorted(live, key=lambda s: len(s.inflight))[:extra]:
                self._stop_slot(slot, "reload")
        self._schedule_turn()

    def _spawn(self) -> None:
        assert self.template is not None
        task_r, task_w = os.pipe()
        res_r, res_w = os.pipe()
        # A second open file description of the task pipe: flock on it excludes
        # the executor's reads, so a waiting task can be taken back (_steal).
        steal_fd = os.open(f"/proc/self/fd/{task_r}", os.O_RDONLY | os.O_NONBLOCK)
        slot = Slot(self._next_slot, self.template.generation, task_w, res_r, steal_fd,
                    FrameReader(self.settings.max_frame_bytes))
        self._next_slot += 1
        ok = self.template.spawn(slot.slot_id, self._limits(), [task_r, res_w])
        os.close(task_r)
        os.close(res_w)
        if not ok:
            for fd in (task_w, res_r, steal_fd):
                os.close(fd)
            return
        os.set_blocking(task_w, False)
        os.set_blocking(res_r, False)
        self.slots[slot.slot_id] = slot
        asyncio.get_running_loop().add_reader(res_r, self._executor_readable, slot)

    def _stop_slot(self, slot: Slot, reason: str) -> None:
        """Let the executor finish its running task, then exit (SIGTERM is only a flag)."""
        if slot.state in (ExecutorState.STOPPING, ExecutorState.DEAD):
            return
        slot.move(ExecutorState.STOPPING)
        slot.recycle = slot.recycle or reason
        if slot.pid is not None:
            self._signal(slot, signal.SIGTERM, group=False)
        else:
            self._write(slot, encode(FrameType.STOP, {}))

    def _kill(self, slot: Slot) -> None:
        """Kill the executor's whole process group (the task's children too)."""
        if slot.pid is not None:
            self._signal(slot, signal.SIGKILL, group=True)

    @staticmethod
    def _signal(slot: Slot, sig: int, group: bool) -> None:
        assert slot.pid is not None
        try:
            (os.killpg if group else os.kill)(slot.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            log.error("cannot signal executor %d: %s", slot.pid, exc)

    def _on_template_message(self, tpl: TemplateProcess, ftype: FrameType,
                             body: dict[str, Any]) -> None:
        if ftype == FrameType.SPAWNED:
            slot = self.slots.get(body["slot"])
            if slot is not None:
                slot.pid = body["pid"]
                self.by_pid[slot.pid] = slot
                if slot.state is ExecutorState.STOPPING:
                    self._signal(slot, signal.SIGTERM, group=False)
                elif slot.state is ExecutorState.STARTING:
                    slot.move(ExecutorState.BUSY if slot.inflight else ExecutorState.IDLE)
        elif ftype == FrameType.EXITED:
            slot = self.by_pid.get(body["pid"])
            if slot is not None:
                slot.exit_status = body["status"]
                if slot.eof:
                    self._bury(slot)

    def _on_template_exit(self, tpl: TemplateProcess) -> None:
        if tpl in self.old_templates:
            self.old_templates.remove(tpl)
            return
        if tpl is self.template and not self._stopping:
            log.error("the template process died: starting a new one")
            for slot in list(self.slots.values()):
                if slot.generation == tpl.generation:
                    self._stop_slot(slot, "crash")
            self.template = None
            asyncio.get_running_loop().create_task(self._restart_template())

    async def _restart_template(self) -> None:
        delay = 0.1
        while not self._stopping and self.template is None:
            try:
                self.template = await self._start_template()
            except RuntimeError as exc:
                log.error("%s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self._top_up()

    # -- pipes -------------------------------------------------------------------

    def _write(self, slot: Slot, data: bytes) -> None:
        """Write to the executor's pipe without blocking; the rest waits for writability."""
        buf = self._outbufs.get(slot.write_fd)
        if buf is None:
            try:
                n = os.write(slot.write_fd, data)
            except BlockingIOError:
                n = 0
            except OSError:
                return  # the executor is gone; its EOF handles the tasks
            if n == len(data):
                return
            self._outbufs[slot.write_fd] = bytearray(data[n:])
            asyncio.get_running_loop().add_writer(slot.write_fd, self._writable, slot)
        else:
            buf += data

    def _writable(self, slot: Slot) -> None:
        buf = self._outbufs[slot.write_fd]
        try:
            n = os.write(slot.write_fd, buf)
        except BlockingIOError:
            return
        except OSError:
            n = len(buf)
        del buf[:n]
        if not buf:
            del self._outbufs[slot.write_fd]
            asyncio.get_running_loop().remove_writer(slot.write_fd)

    def _executor_readable(self, slot: Slot) -> None:
        try:
            data = os.read(slot.read_fd, 262144)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._on_eof(slot)
            return
        try:
            for ftype, body in slot.reader.feed(data):
                if ftype == FrameType.STARTED:
                    self._on_started(slot, body)
                elif ftype == FrameType.PROGRESS:
                    entry = self.inflight.get(body.get("id", ""))
                    if entry is not None:
                        entry[1].progress = {"value": body.get("value"),
                                             "message": body.get("message", "")}
                elif ftype == FrameType.DONE:
                    self._on_done(slot, body)
        except (ProtocolError, KeyError, IndexError) as exc:
            log.error("executor %s broke the protocol (%s): killing it", slot.pid, exc)
            self._kill(slot)

    def _on_started(self, slot: Slot, body: dict[str, Any]) -> None:
        inf = slot.inflight[0]
        if inf.id != body["id"]:
            raise ProtocolError("malformed_frame", f"STARTED for {body['id']}, expected {inf.id}")
        inf.started_at = time.time()
        if slot.state is ExecutorState.IDLE:
            slot.move(ExecutorState.BUSY)
        if inf.cancelled_by is not None:  # cancelled with force while it waited in the pipe
            slot.kill_reason = "cancelled"
            self._kill(slot)
        self.metrics.observe_queue(inf.kind, max(0.0, inf.started_at -
                                                 max(inf.created_at, inf.not_before)))

    def _on_done(self, slot: Slot, body: dict[str, Any]) -> None:
        inf = slot.inflight.popleft()
        if inf.id != body["id"]:
            raise ProtocolError("malformed_frame", f"DONE for {body['id']}, expected {inf.id}")
        slot.hold = None
        self.inflight.pop(inf.id, None)
        slot.tasks_run += 1
        slot.rss_mb = float(body.get("rss_mb") or 0.0)
        if slot.state is ExecutorState.BUSY and not slot.inflight:
            slot.move(ExecutorState.IDLE)
        if body.get("recycle"):
            slot.recycle = body["recycle"]
            log.info("executor %s leaves after task %s: %s (rss %.0f MB)", slot.pid, inf.id,
                     body["recycle"], slot.rss_mb)
            if slot.state is not ExecutorState.STOPPING:
                slot.move(ExecutorState.STOPPING)
            self._top_up()
        self._complete(inf, body["ok"], body.get("result"), body.get("error"),
                       body.get("retry_delay_s"), bool(body.get("retryable", True)))
        self._schedule_turn()

    def _on_eof(self, slot: Slot) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(slot.read_fd)
        if slot.write_fd in self._outbufs:
            loop.remove_writer(slot.write_fd)
            del self._outbufs[slot.write_fd]
        for fd in (slot.read_fd, slot.write_fd, slot.steal_fd):
            os.close(fd)
        slot.eof = True
        if slot.state is not ExecutorState.STOPPING:
            slot.move(ExecutorState.STOPPING)
        # Tasks that only waited in the pipe never started: back to pending now,
        # attempt not counted, so another executor can take them at once.
        for inf in [i for i in slot.inflight if i.started_at is None]:
            slot.inflight.remove(inf)
            self._release(inf)
        self._top_up()
        if slot.exit_status is not None or slot.pid is None:
            self._bury(slot)
        else:
            loop.call_later(STATUS_WAIT_S, self._bury, slot)

    def _bury(self, slot: Slot) -> None:
        """Record why a dead executor's running task ended; forget the executor."""
        if slot.state is ExecutorState.DEAD:
            return
        status = slot.exit_status or "unknown"
        restart = slot.kill_reason or slot.recycle or "crash"
        for inf in list(slot.inflight):
            self.inflight.pop(inf.id, None)
            if slot.kill_reason == "cancelled" and inf.cancelled_by:
                self.requests.task_changed(inf.id)
                continue
            if slot.kill_reason == "shutdown":
                self._release(inf)
                continue
            if slot.kill_reason == "timeout":
                limit = inf.timeout_s + self.settings.kill_grace_s
                error = {"reason": "timeout", "traceback": "",
                         "message": f"timeout: hard time limit of {limit:g} s passed; "
                                    f"executor {slot.pid} and its process group were killed"}
            else:
                error = {"reason": "crash", "traceback": "",
                         "message": f"crash: {status} (executor pid {slot.pid} died while "
                                    f"running the task)"}
            self._complete(inf, False, None, error, None, True)
        slot.inflight.clear()
        slot.move(ExecutorState.DEAD)
        self.slots.pop(slot.slot_id, None)
        if slot.pid is not None:
            self.by_pid.pop(slot.pid, None)
        if restart in ("crash", "timeout", "memory", "recycled", "reload", "killed"):
            self.metrics.executor_restarted(restart)
        elif restart == "cancelled":
            self.metrics.executor_restarted("killed")
        if restart == "crash" or slot.kill_reason:
            log.warning("executor %s ended (%s, %s)", slot.pid, status, restart)
        self._top_up()

    # -- outcomes ----------------------------------------------------------------

    def _release(self, inf: Inflight) -> None:
        self.inflight.pop(inf.id, None)
        self.store.reschedule(inf.id, inf.not_before, error=None, count_attempt=False)
        self._maybe_due = True
        self._schedule_turn()

    def policy(self, kind: str) -> RetryPolicy:
        """The retry back-off for ``kind``: its ``@task`` options, else the settings."""
        opts = self.manifest.get(kind, {})
        base = opts.get("retry_backoff_s")
        cap = opts.get("retry_backoff_max_s")
        return RetryPolicy(self.settings.retry_backoff_s if base is None else base,
                           self.settings.retry_backoff_max_s if cap is None else cap)

    def _complete(self, inf: Inflight, ok: bool, result: bytes | None,
                  error: dict[str, Any] | None, retry_delay_s: float | None,
                  retryable: bool) -> None:
        now = time.time()
        if inf.started_at is not None:
            self.metrics.observe_run(inf.kind, now - inf.started_at)
        if ok:
            self._finishes.append((Outcome(inf.id, "succeeded", now, inf.started_at, result,
                                           None, inf.progress), inf))
            self._schedule_turn()
            return
        assert error is not None
        self.metrics.task_failed_attempt(inf.kind, error.get("reason", "error"))
        if should_retry(inf.attempts, inf.max_retries, retryable):
            delay = (retry_delay_s if retry_delay_s is not None
                     else self.policy(inf.kind).delay_s(inf.attempts))
            self.store.reschedule(inf.id, now + delay, error=error, count_attempt=True)
            self.metrics.task_retried(inf.kind)
            self.note_due(now + delay)
            self.requests.task_changed(inf.id)
            return
        self._finishes.append((Outcome(inf.id, "failed", now, inf.started_at, None, error,
                                       inf.progress), inf))
        self._schedule_turn()

    # -- scheduling ----------------------------------------------------------------

    def note_due(self, when: float) -> None:
        """Something becomes due at ``when``: make sure a claim runs then."""
        if when <= time.time():
            self._maybe_due = True
            self._schedule_turn()
        elif self._next_due is None or when < self._next_due:
            self._next_due = when
            self._arm_due_timer()

    def _arm_due_timer(self) -> None:
        """Wake when ``_next_due`` comes, not at the next tick: back-off waits and
        delays would otherwise be up to TICK_S late, by a different amount each
        time (enough to reorder two consecutive back-off waits). A time already
        past is left to the tick (a due task held back by its group would spin)."""
        if self._due_timer is not None:
            self._due_timer.cancel()
            self._due_timer = None
        if self._next_due is None:
            return
        delay = self._next_due - time.time()
        if delay > 0:  # +1 ms: the loop's timers may round down to the millisecond
            self._due_timer = asyncio.get_running_loop().call_later(
                min(delay + 0.001, DUE_TIMER_MAX_S), self._due)

    def _due(self) -> None:
        self._due_timer = None
        if self._next_due is not None and time.time() >= self._next_due:
            self._next_due = None
            self._maybe_due = True
            self._schedule_turn()
        else:
            self._arm_due_timer()

    def _schedule_turn(self) -> None:
        if not self._turn_scheduled:
            self._turn_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_turn)

    def _flush_turn(self) -> None:
        """End of a loop turn: commit submissions and outcomes, then hand out work."""
        self._turn_scheduled = False
        self.requests.flush_submits()
        with self.store.batch():  # one commit for this turn's outcomes and claims
            if self._finishes:
                batch, self._finishes = self._finishes, []
                records = self.store.finish([o for o, _ in batch])
                for rec in records:
                    self.metrics.task_finished(rec.kind, rec.status)
                    self.requests.task_finished(rec)
                    if rec.group_id is not None:
                        self._maybe_due = True
            self._dispatch()

    def _dispatch(self) -> None:
        if self._stopping or not self._maybe_due:
            return
        live = self._live()
        room = [(s, (1 if s.hold else PREFETCH + 1) - len(s.inflight)) for s in live]
        capacity = sum(n for _, n in room if n > 0)
        # Claim in batches: wait until some executor is idle or has few tasks left.
        if capacity <= 0 or all(len(s.inflight) > REFILL_AT for s in live):
            return
        now = time.time()
        claimed = self.store.claim(capacity, now, self.owner, LEASE_S)
        if len(claimed) < capacity:
            self._maybe_due = False
            next_due = self.store.next_due()
            if next_due != self._next_due:
                self._next_due = next_due
                self._arm_due_timer()
        if not claimed:
            return
        # Fill the emptiest executors first: idle ones get a task before any
        # busy one gets a second.
        room.sort(key=lambda p: len(p[0].inflight))
        frames: dict[int, list[bytes]] = {}
        it = iter(claimed)
        for depth in range(PREFETCH + 1):
            for slot, n in room:
                if len(slot.inflight) != depth or n <= 0 or (slot.hold and depth > 0):
                    continue
                rec = next(it, None)
                if rec is None:
                    break
                self._assign(slot, rec, frames)
        for rec in it:  # leftovers (should not happen): give back
            self.store.reschedule(rec.id, rec.not_before, error=None, count_attempt=False)
        for slot_id, parts in frames.items():
            self._write(self.slots[slot_id], b"".join(parts))

    def _assign(self, slot: Slot, rec: TaskRecord, frames: dict[int, list[bytes]]) -> None:
        inf = Inflight(rec.id, rec.kind, rec.attempts, rec.max_retries, rec.timeout_s,
                       rec.created_at, rec.not_before)
        slot.inflight.append(inf)
        self.inflight[rec.id] = (slot, inf)
        desc = {"id": rec.id, "kind": rec.kind, "payload": rec.payload, "ref": rec.ref,
                "attempt": rec.attempts, "max_retries": rec.max_retries,
                "timeout_s": rec.timeout_s}
        frames.setdefault(slot.slot_id, []).append(encode(FrameType.RUN, desc))

    def _steal(self, slot: Slot) -> None:
        """Take the tasks waiting in ``slot``'s pipe back, if it has not taken them.

        Runs when the executor's current task is slow; the tasks go back to
        pending (no attempt counted) for an idle executor. Holding the pipe's
        flock makes this atomic with the executor's own frame reads.
        """
        if slot.write_fd in self._outbufs or slot.eof:
            return  # part of a frame is not in the pipe yet: try next tick
        try:
            fcntl.flock(slot.steal_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # the executor is taking a frame right now
        try:
            data = b""
            while True:
                try:
                    chunk = os.read(slot.steal_fd, 262144)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                data += chunk
        finally:
            fcntl.flock(slot.steal_fd, fcntl.LOCK_UN)
        cur = slot.current
        slot.hold = cur.id if cur is not None else None
        taken = {body["id"] for ftype, body in FrameReader(1 << 62).feed(data)
                 if ftype == FrameType.RUN}
        for inf in [i for i in slot.inflight if i.id in taken]:
            slot.inflight.remove(inf)
            self._release(inf)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self._tick()
            except Exception:
                log.exception("pool tick failed")

    def _tick(self) -> None:
        now = time.time()
        grace = self.settings.kill_grace_s
        for slot in list(self.slots.values()):
            cur = slot.current
            if (cur is not None and cur.started_at is not None and len(slot.inflight) > 1
                    and now - cur.started_at > STEAL_AFTER_S):
                self._steal(slot)
            if (cur is not None and slot.kill_reason is None and cur.started_at is not None
                    and now > cur.started_at + cur.timeout_s + grace):
                log.warning("task %s passed its hard time limit: killing executor %s",
                            cur.id, slot.pid)
                slot.kill_reason = "timeout"
                self._kill(slot)
        if self._next_due is not None and now >= self._next_due:
            self._next_due = None
            self._maybe_due = True
            self._schedule_turn()
        if now - self._last_renew > LEASE_S / 3 and self.inflight:
            self._last_renew = now
            self.store.renew(list(self.inflight), self.owner, now + LEASE_S)
        ttl = self.settings.result_ttl_s
        if now - self._last_purge > min(60.0, max(0.5, ttl / 4)):
            self._last_purge = now
            purged = self.store.purge(now - ttl)
            if purged:
                log.info("purged %d finished task(s) older than %g s", purged, ttl)
        for tpl in list(self.old_templates):
            tpl.reap()

    # -- used by requests --------------------------------------------------------

    def tasks_enqueued(self, records: list[TaskRecord]) -> None:
        """New tasks are stored: count them and hand them out this turn."""
        for rec in records:
            self.metrics.task_submitted(rec.kind)
        self._maybe_due = True
        self._schedule_turn()

    def take_back(self, task_id: str) -> bool:
        """Take ``task_id`` back to pending if it only waits in an executor's pipe.

        True if it is pending again (the store says so); False if it is not
        handed out here, has started, or its executor is taking it right now.
        """
        entry = self.inflight.get(task_id)
        if entry is None or entry[1].started_at is not None:
            return False
        self._steal(entry[0])
        return task_id not in self.inflight

    def cancel_running(self, task_id: str, by: str) -> bool:
        """Kill the executor running ``task_id``; False if it is not running here.

        A task still waiting behind another one in the pipe (it could not be
        taken back) is not the executor's to lose yet: it is killed when it
        starts (``_on_started``), so the task running before it is spared.
        """
        entry = self.inflight.get(task_id)
        if entry is None:
            return False
        slot, inf = entry
        inf.cancelled_by = by
        if inf.started_at is not None or inf is slot.inflight[0]:
            slot.kill_reason = "cancelled"
            self._kill(slot)
        return True

    def executor_rows(self) -> list[dict[str, Any]]:
        """One row per executor for ``/queue/stats``."""
        rows = []
        for slot in self.slots.values():
            cur = slot.current
            rows.append({"pid": slot.pid, "state": slot.state.value,
                         "task_id": cur.id if cur else None, "tasks_run": slot.tasks_run,
                         "rss_mb": slot.rss_mb})
        return rows
