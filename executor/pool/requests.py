"""The pool's answers to socket requests (the ops of ``executor.pool.ops``).

Submissions are not committed one by one: ``submit`` queues them and the
pool stores them at the end of the loop turn (``take_submits``,
``store_submits``), so everything that arrived together is one transaction,
and every reply goes out only after that commit is on disk. Should the
store refuse the turn's tasks anyway, each submission is stored on its own,
so only one the store refuses alone fails. Before that, each spec is
checked (``executor.pool.specs``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from executor.pool import observe, reruns
from executor.pool.listener import ClientConn
from executor.pool.ops import record_to_wire
from executor.pool.port import PoolPort
from executor.pool.specs import Invalid, Specs
from executor.store import FINISHED, STATUSES, NewTask, StoreError, TaskRecord
from executor.store.records import BatchLost

log = logging.getLogger("offload.pool")
MAX_WAIT_S = 3600.0
"""The longest a ``get`` may wait for its task to finish (HTTP caps it lower,
``long_poll_max_s``)."""
# One ``submit`` request waiting for the turn: (conn, request id, tasks, ids only).
Submission = tuple[ClientConn, int, list[NewTask], bool]

class Requests:
    """Dispatches requests to handlers; holds submissions and long-poll waiters."""

    def __init__(self, pool: PoolPort) -> None:
        self.pool = pool
        self._submits: list[Submission] = []
        self._waiters: dict[str, list[tuple[ClientConn, int, asyncio.TimerHandle]]] = {}
        self.specs = Specs(pool)

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
            # The store failed to carry the request out (its checks of the
            # caller's values are Invalid): the detail names the store's file,
            # so it goes to the log and the answer says only what happened.
            log.error("request %s: the store failed: %s", op, exc)
            conn.fail(req_id, "store_unavailable", f"the store could not carry out {op!r}, "
                      "nothing was changed; retry shortly (the pool's log says why)")
        except Exception as exc:
            log.exception("request %s failed", op)
            conn.fail(req_id, "internal", f"{type(exc).__name__}: {exc}")
        else:
            if result is not _DEFERRED:
                conn.reply(req_id, result)

    # -- submit ------------------------------------------------------------------

    def op_submit(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        tasks = args.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise Invalid("invalid", "tasks must be a non-empty list", "tasks")
        now = time.time()
        specs = [self.specs.task(i, raw, now) for i, raw in enumerate(tasks)]
        self._submits.append((conn, req_id, specs, args.get("reply") == "ids"))
        self.pool.schedule_turn()
        return _DEFERRED

    def take_submits(self) -> list[Submission]:
        """The submissions queued this loop turn (``op_submit``), now the caller's."""
        batch, self._submits = self._submits, []
        return batch

    def store_submits(self, batch: list[Submission]
                      ) -> Callable[[BaseException | None], None] | None:
        """Store ``batch`` (inside the pool's turn transaction, see ``Pool.enqueue``).

        Returns the callback that answers every submitter whose tasks were
        stored: the pool calls it once the transaction is on disk, or with
        the error that lost it. The turn is stored in one ``enqueue``; if
        the store refuses that, each submission is stored on its own, so
        only those the store refuses alone fail. Their submitters are
        answered ``internal`` at once (nothing of theirs is stored). Returns
        ``None`` when nothing was stored.
        """
        stored = self._enqueue(batch)
        if not stored:
            return None
        replies = []
        for (conn, req_id, _, ids_only), records in stored:
            replies.append((conn, req_id, {"ids": [r.id for r in records]} if ids_only
                            else {"tasks": [record_to_wire(r) for r in records]}))

        def acknowledge(error: BaseException | None) -> None:
            for conn, req_id, result in replies:
                if error is None:
                    conn.reply(req_id, result)
                else:
                    # FsyncThread._synced logged the error: its detail stays out of answers.
                    conn.fail(req_id, "store_unavailable", "the tasks could not be made "
                              "durable; retry shortly with the same idempotency key (the "
                              "pool's log says why)")

        return acknowledge

    def _enqueue(self, batch: list[Submission], *, retried: bool = False
                 ) -> list[tuple[Submission, list[TaskRecord]]]:
        """Store ``batch`` in one ``Pool.enqueue``, else each submission alone;
        the submissions stored, with their records. Those the store refuses
        alone are answered ``internal`` here; ``BatchLost`` (the turn's whole
        transaction is gone) is raised, for the turn to answer everyone."""
        try:
            records = self.pool.enqueue([t for _, _, specs, _ in batch for t in specs])
        except BatchLost:
            raise  # the turn is lost: Turn.flush answers everyone store_unavailable
        except Exception as exc:
            if len(batch) > 1:
                # Safe to try again: a failed enqueue leaves no trace. The
                # store call is all or nothing (a savepoint in the turn's
                # batch), and Pool.enqueue hands tasks out and counts them
                # only after it, which cannot fail for a task Specs.task accepted.
                log.exception("storing %d submissions together failed; storing each on its "
                              "own", len(batch))
                return [done for sub in batch for done in self._enqueue([sub], retried=True)]
            if retried:  # its traceback is logged above
                log.error("the store refused a submission on its own too: %s: %s",
                          type(exc).__name__, exc)
            else:
                log.exception("enqueue failed")
            conn, req_id, _, _ = batch[0]
            conn.fail(req_id, "internal", f"the store refused the tasks: {exc}")
            return []
        stored = []
        pos = 0
        for sub in batch:
            n = len(sub[2])
            stored.append((sub, records[pos:pos + n]))
            pos += n
        return stored

    # -- reads -------------------------------------------------------------------

    def _record(self, task_id: Any) -> TaskRecord:
        if not isinstance(task_id, str):
            raise Invalid("invalid", "id must be a string", "id")
        rec = self.pool.store.get(task_id)
        if rec is None:
            raise Invalid("not_found", f"no task with id {task_id!r}", "id")
        entry = self.pool.fleet.handout.inflight.get(task_id)
        if entry is not None and rec.status == "running":
            inf = entry[1]
            if inf.started_at is None:
                # Claimed, but only waiting in an executor's pipe (prefetch): to
                # its owner it has not started, and this attempt may never count.
                rec.status, rec.started_at, rec.attempts = "pending", None, rec.attempts - 1
            else:
                # Started: stored first if the turn has not yet, so that a
                # reply saying "running" is what a crash keeps (attempt counted).
                self.pool.store_start(inf)
                rec.started_at, rec.progress = inf.started_at, inf.progress or rec.progress
        return rec

    def op_get(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        rec = self._record(args.get("id"))
        wait_s = args.get("wait_s")
        if wait_s is not None and (isinstance(wait_s, bool) or not isinstance(
                wait_s, (int, float)) or not 0 <= wait_s <= MAX_WAIT_S):
            # A waiter (and its timer) is held until then, even if its client goes.
            raise Invalid("invalid", f"wait_s must be a number of seconds from 0 to "
                                     f"{MAX_WAIT_S:g}", "wait_s")
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
        self.pool.fleet.handout.take_back(rec.id)
        stored = self.pool.store.get(rec.id)
        assert stored is not None
        rec = stored  # decide on the store's status, not the displayed one
        if rec.status in FINISHED:
            raise Invalid("conflict", f"task {rec.id} already ended: {rec.status}", "id")
        ended = self.pool.outcome_pending(rec.id)
        if ended is not None:  # its outcome is in, to be stored at the end of this turn
            raise Invalid("conflict", f"task {rec.id} already ended: {ended}", "id")
        if rec.status == "running" and not force:
            raise Invalid("conflict", f"task {rec.id} is running; cancel with force=true to "
                                      f"kill its executor", "id")
        # A running task is cancelled only while it holds the claim seen here
        # (its lease token): not a later run of it on another host.
        after = self.pool.store.cancel(rec.id, by, time.time(), force=force,
                                       token=rec.lease_token if rec.status == "running" else None)
        if after is None or after.status != "cancelled":
            raise Invalid("conflict", f"task {rec.id} could not be cancelled", "id")
        if rec.status == "running":
            self.pool.fleet.handout.cancel_running(rec.id, by)
        self.pool.fleet.handout.forget(rec.id)
        self.pool.metrics.task_finished(after.kind, "cancelled")
        self.task_finished(after)
        if after.group_id is not None:
            self.pool.note_due(time.time())  # the next call of its group may run now
        return record_to_wire(after)

    def op_retry(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        return reruns.retry(self.pool, args.get("id"))

    def op_retry_failed(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        return reruns.retry_failed(self.pool, args)

    # -- reading the pool (``observe``) --------------------------------------------------

    def op_stats(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        return observe.stats(self.pool)

    def op_schedules(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        return {"schedules": self.pool.schedule_rows()}

    def op_kinds(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        return {"kinds": self.pool.manifest}

    def op_health(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        return observe.health(self.pool)

    def op_metrics(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        return observe.metrics(self.pool)

    def op_observe_http(self, conn: ClientConn, req_id: int, args: dict[str, Any]) -> object:
        return observe.observe_http(self.pool, args)


_DEFERRED = object()
