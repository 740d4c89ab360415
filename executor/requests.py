"""The pool's answers to socket requests (the ops of ``executor.ops``).

Submissions are not committed one by one: ``submit`` queues them and the
pool stores them at the end of the loop turn (``take_submits``,
``store_submits``), so everything that arrived together is one transaction,
and every reply goes out only after that commit is on disk.

Before that, each spec is checked, including that its call binds to the
registered kind's parameters (``executor.callcheck``, from the template's
manifest): a call that cannot bind would fail on every attempt.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from executor.callcheck import CallChecks
from executor.listener import ClientConn
from executor.ops import record_to_wire
from executor.registry import unknown_kind_message
from executor.store import FINISHED, STATUSES, NewTask, StoreError, TaskRecord

if TYPE_CHECKING:
    from executor.pool import Pool

log = logging.getLogger("offload.pool")
_SPEC_KEYS = frozenset({"kind", "payload", "max_retries", "timeout_s", "priority", "not_before",
                        "idempotency_key", "group_id", "seq", "ref"})


class Invalid(Exception):
    """A request argument is wrong; ``field`` names it."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


class Requests:
    """Dispatches requests to handlers; holds submissions and long-poll waiters."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._submits: list[tuple[ClientConn, int, list[NewTask], bool]] = []
        self._waiters: dict[str, list[tuple[ClientConn, int, asyncio.TimerHandle]]] = {}
        self._checks = CallChecks()

    def handle(self, conn: ClientConn, req_id: int, op: str, args: dict[str, Any]) -> None:
        """Entry point for every request frame."""
        handler = getattr(self, "op_" + op, None)
        if handler is None:
            conn.fail(req_id, "unknown_op", f"unknown op {op!r}")
            return
        try:
            result = handler(conn, req_id, args)
        except Invalid as exc:
            conn.fail(req_id, exc.code, exc.message, exc.field)
        except StoreError as exc:
            conn.fail(req_id, "invalid", str(exc))
        except Exception as exc:
            log.exception("request %s failed", op)
            conn.fail(req_id, "internal", f"{type(exc).__name__}: {exc}")
        else:
            if result is not _DEFERRED:
                conn.reply(req_id, result)

    # -- submit ------------------------------------------------------------------

    def _spec(self, i: int, raw: Any, now: float) -> NewTask:
        # Hot path (every submitted task): no strings built unless refused.
        if not isinstance(raw, dict):
            raise _bad(i, "", "must be a map")
        if not raw.keys() <= _SPEC_KEYS:
            raise _bad(i, "", f"has unknown field(s): {sorted(set(raw) - _SPEC_KEYS)}")
        get = raw.get
        kind, payload, ref = get("kind"), get("payload", b""), get("ref")
        if not isinstance(kind, str) or not kind:
            raise _bad(i, ".kind", "must be a non-empty string")
        manifest = self.pool.manifest
        opts = manifest.get(kind)
        if opts is None:
            if not ref:
                raise Invalid("unknown_kind", unknown_kind_message(kind, manifest),
                              f"tasks[{i}].kind")
            opts = {}
        if not isinstance(payload, bytes):
            raise _bad(i, ".payload", "must be bytes")
        if not ref:  # BackgroundTasks calls (ref) were checked by add_task
            self._check_call(i, kind, opts, payload, manifest)
        max_retries = get("max_retries")
        if max_retries is None:
            max_retries = opts.get("max_retries")
            if max_retries is None:
                max_retries = self.pool.settings.default_max_retries
        timeout_s = get("timeout_s")
        if timeout_s is None:
            timeout_s = opts.get("timeout_s")
            if timeout_s is None:
                timeout_s = self.pool.settings.default_timeout_s
        if type(max_retries) is not int or max_retries < 0:
            raise _bad(i, ".max_retries", "must be an integer >= 0")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) \
                or not math.isfinite(timeout_s) or timeout_s <= 0:
            raise _bad(i, ".timeout_s", "must be a number > 0")
        priority = get("priority") or 0
        if type(priority) is not int:
            raise _bad(i, ".priority", "must be an integer")
        not_before = get("not_before") or 0.0
        if isinstance(not_before, bool) or not isinstance(not_before, (int, float)) \
                or not math.isfinite(not_before) or not_before < 0:
            # Refused here: the store cannot hold NaN, and a failed enqueue
            # fails every submission committed in the same loop turn.
            raise _bad(i, ".not_before", "must be a time in seconds since the epoch")
        seq = get("seq") or 0
        if type(seq) is not int or seq < 0:
            raise _bad(i, ".seq", "must be an integer >= 0")
        return NewTask(kind, payload, max_retries, float(timeout_s), priority,
                       float(not_before), get("group_id"), seq, get("idempotency_key"), ref)

    def _check_call(self, i: int, kind: str, opts: dict[str, Any], payload: bytes,
                    manifest: dict[str, dict[str, Any]]) -> None:
        """Raise ``Invalid`` (field ``tasks[i].args``, ``.kwargs`` or ``.payload``)
        if the call in ``payload`` does not bind to ``kind``'s parameters."""
        problem = self._checks.problem(kind, opts, payload, manifest)
        if problem is not None:
            field, message = problem
            raise Invalid("invalid", message if field != "payload" else
                          f"tasks[{i}].payload {message}", f"tasks[{i}].{field}")

    def op_submit(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        tasks = args.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise Invalid("invalid", "tasks must be a non-empty list", "tasks")
        now = time.time()
        specs = [self._spec(i, raw, now) for i, raw in enumerate(tasks)]
        self._submits.append((conn, req_id, specs, args.get("reply") == "ids"))
        self.pool.schedule_turn()
        return _DEFERRED

    def take_submits(self) -> list[tuple[ClientConn, int, list[NewTask], bool]]:
        """The submissions queued this loop turn (``op_submit``), now the caller's."""
        batch, self._submits = self._submits, []
        return batch

    def store_submits(self, batch: list[tuple[ClientConn, int, list[NewTask], bool]]
                      ) -> Callable[[BaseException | None], None] | None:
        """Store ``batch`` (inside the pool's turn transaction, see ``Pool.enqueue``).

        Returns the callback that answers every submitter: the pool calls it
        once the transaction is on disk, or with the error that lost it. If
        the store refuses the tasks, the submitters are answered with the
        error at once (nothing of theirs is stored) and ``None`` is returned.
        """
        try:
            records = self.pool.enqueue([t for _, _, specs, _ in batch for t in specs])
        except Exception as exc:
            log.exception("enqueue failed")
            for conn, req_id, _, _ in batch:
                conn.fail(req_id, "internal", f"the store refused the tasks: {exc}")
            return None
        replies = []
        pos = 0
        for conn, req_id, specs, ids_only in batch:
            mine = records[pos:pos + len(specs)]
            pos += len(specs)
            replies.append((conn, req_id, {"ids": [r.id for r in mine]} if ids_only
                            else {"tasks": [record_to_wire(r) for r in mine]}))

        def acknowledge(error: BaseException | None) -> None:
            for conn, req_id, result in replies:
                if error is None:
                    conn.reply(req_id, result)
                else:
                    conn.fail(req_id, "internal", f"the tasks could not be made durable: "
                                                  f"{error}")

        return acknowledge

    # -- reads -------------------------------------------------------------------

    def _record(self, task_id: Any) -> TaskRecord:
        if not isinstance(task_id, str):
            raise Invalid("invalid", "id must be a string", "id")
        rec = self.pool.store.get(task_id)
        if rec is None:
            raise Invalid("not_found", f"no task with id {task_id!r}", "id")
        entry = self.pool.fleet.inflight.get(task_id)
        if entry is not None and rec.status == "running":
            inf = entry[1]
            if inf.started_at is None:
                # Claimed, but only waiting in an executor's pipe (prefetch): to
                # its owner it has not started, and this attempt may never count.
                rec.status, rec.started_at, rec.attempts = "pending", None, rec.attempts - 1
            else:
                rec.started_at, rec.progress = inf.started_at, inf.progress or rec.progress
        return rec

    def op_get(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        rec = self._record(args.get("id"))
        wait_s = args.get("wait_s")
        if rec.status in FINISHED or not wait_s:
            return record_to_wire(rec)
        loop = asyncio.get_running_loop()
        handle = loop.call_later(float(wait_s), self._wait_expired, rec.id, conn, req_id)
        self._waiters.setdefault(rec.id, []).append((conn, req_id, handle))
        return _DEFERRED

    def _wait_expired(self, task_id: str, conn: ClientConn, req_id: int) -> None:
        waiters = self._waiters.get(task_id, [])
        for w in waiters:
            if w[0] is conn and w[1] == req_id:
                waiters.remove(w)
                break
        if not waiters:
            self._waiters.pop(task_id, None)
        try:
            conn.reply(req_id, record_to_wire(self._record(task_id)))
        except Invalid as exc:
            conn.fail(req_id, exc.code, exc.message, exc.field)

    def task_finished(self, rec: TaskRecord) -> None:
        """Answer the long-polls waiting on a task that just finished."""
        for conn, req_id, handle in self._waiters.pop(rec.id, ()):
            handle.cancel()
            conn.reply(req_id, record_to_wire(rec))

    def op_list(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        status, kind = args.get("status"), args.get("kind")
        if status is not None and status not in STATUSES:
            raise Invalid("invalid", f"status must be one of {', '.join(STATUSES)}", "status")
        limit = args.get("limit", 50)
        if not isinstance(limit, int) or not 1 <= limit <= 500:
            raise Invalid("invalid", "limit must be an integer from 1 to 500", "limit")
        try:
            records, cursor = self.pool.store.list(status=status, kind=kind, limit=limit,
                                                   cursor=args.get("cursor"))
        except StoreError as exc:
            raise Invalid("invalid", str(exc), "cursor") from None
        return {"tasks": [record_to_wire(r) for r in records], "next_cursor": cursor}

    def op_cancel(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        rec = self._record(args.get("id"))
        force, by = bool(args.get("force")), str(args.get("by") or "api")
        # A task only waiting in a busy executor's pipe (prefetch) has not started:
        # take it back, and it is cancelled like any pending task, without a kill.
        self.pool.fleet.take_back(rec.id)
        stored = self.pool.store.get(rec.id)
        assert stored is not None
        rec = stored  # decide on the store's status, not the displayed one
        if rec.status in FINISHED:
            raise Invalid("conflict", f"task {rec.id} already ended: {rec.status}", "id")
        if rec.status == "running" and not force:
            raise Invalid("conflict", f"task {rec.id} is running; cancel with force=true to "
                                      f"kill its executor", "id")
        after = self.pool.store.cancel(rec.id, by, time.time(), force=force)
        if after is None or after.status != "cancelled":
            raise Invalid("conflict", f"task {rec.id} could not be cancelled", "id")
        if rec.status == "running":
            self.pool.fleet.cancel_running(rec.id, by)
        self.pool.metrics.task_finished(after.kind, "cancelled")
        self.task_finished(after)
        if after.group_id is not None:
            self.pool.note_due(time.time())  # the next call of its group may run now
        return record_to_wire(after)

    def op_stats(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        counts = self.pool.store.counts()
        self.pool.metrics.set_queue_depth(counts)
        return {"counts": counts, "queue_depth": counts["pending"] + counts["retrying"],
                "executors": self.pool.fleet.rows()}

    def op_kinds(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        return {"kinds": self.pool.manifest}

    def op_health(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        up = sum(1 for s in self.pool.fleet.slots.values()
                 if s.pid is not None and s.state.value in ("idle", "busy"))
        return {"executors_up": up, "executors_wanted": self.pool.settings.executors}

    def op_metrics(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        pool = self.pool
        pool.metrics.set_queue_depth(pool.store.counts())
        pool.metrics.set_executors(pool.fleet.states())
        return {"text": pool.metrics.render().decode()}

    def op_observe_http(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        samples = args.get("samples")
        if not isinstance(samples, list):
            raise Invalid("invalid", "samples must be a list", "samples")
        try:
            self.pool.metrics.observe_http(samples)
        except ValueError as exc:
            raise Invalid("invalid", str(exc), "samples") from None
        return {}


_DEFERRED = object()
def _bad(i: int, field: str, what: str) -> Invalid:
    where = f"tasks[{i}]{field}"
    return Invalid("invalid", f"{where} {what}", where)
