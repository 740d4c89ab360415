"""A fake pool for the HTTP layer's unit tests: the narrow seam.

It listens on a real Unix socket and speaks the real framing
(``executor.wire.protocol``), answering ``REQUEST`` frames with canned, stateful
``REPLY`` frames over a dict of tasks. It runs its own event loop in a
thread, so tests drive the app from any loop they like.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

from executor.wire.codec import encode_value
from executor.wire.protocol import FrameReader, FrameType, encode

FINISHED = ("succeeded", "failed", "cancelled")


class FakePoolError(Exception):
    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.wire = {"code": code, "message": message, "field": field}


class FakePool:
    """``tasks`` holds wire records by id; ``calls`` every ``(op, args)`` received."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.tasks: dict[str, dict[str, Any]] = {}
        self.payloads: dict[str, bytes] = {}
        self.by_key: dict[str, str] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.samples: list[list[Any]] = []
        self.kinds = {"send_email": {"max_retries": 3, "timeout_s": 30.0},
                      "report": {"max_retries": 0, "timeout_s": 600.0}}
        self.health = {"executors_up": 2, "executors_wanted": 2}
        self.errors: dict[str, dict[str, Any]] = {}  # op -> error wire, answered once
        self.results: dict[str, Any] = {}  # op -> canned result, answered once
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pending: set[asyncio.Future[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> FakePool:
        fut = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self._thread.start()
        fut.result(5)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, self.path)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            await asyncio.sleep(0)
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]

    # -- test helpers ------------------------------------------------------
    def add(self, status: str = "pending", **fields: Any) -> dict[str, Any]:
        rec = self._record({"kind": "send_email"}, time.time())
        rec.update(status=status, **fields)
        self.tasks[rec["id"]] = rec
        return rec

    def finish(self, task_id: str, result: Any = None) -> None:
        rec = self.tasks[task_id]
        rec.update(status="succeeded", attempts=1, started_at=time.time(),
                   finished_at=time.time(), result=encode_value(result))

    # -- protocol ----------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = FrameReader()
        self._writers.add(writer)
        try:
            while data := await reader.read(65536):
                for ftype, body in frames.feed(data):
                    if ftype == FrameType.REQUEST:
                        task = asyncio.ensure_future(self._answer(body, writer))
                        self._pending.add(task)
                        task.add_done_callback(self._pending.discard)
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        op, args = body["op"], body.get("args") or {}
        self.calls.append((op, args))
        try:
            if op in self.errors:
                err = self.errors.pop(op)
                raise FakePoolError(err["code"], err["message"], err.get("field"))
            if op in self.results:
                result = self.results.pop(op)
            else:
                result = await getattr(self, "_op_" + op)(args)
            reply = {"id": body["id"], "ok": True, "result": result}
        except FakePoolError as exc:
            reply = {"id": body["id"], "ok": False, "error": exc.wire}
        writer.write(encode(FrameType.REPLY, reply))

    def _record(self, spec: dict[str, Any], now: float) -> dict[str, Any]:
        defaults = self.kinds.get(spec["kind"], {"max_retries": 3, "timeout_s": 300.0})
        return {
            "id": uuid.uuid4().hex, "kind": spec["kind"], "status": "pending", "attempts": 0,
            "max_retries": spec.get("max_retries", defaults["max_retries"]),
            "timeout_s": spec.get("timeout_s", defaults["timeout_s"]),
            "priority": spec.get("priority", 0), "not_before": spec.get("not_before", 0.0),
            "created_at": now, "started_at": None, "finished_at": None, "result": None,
            "error": None, "progress": None, "cancelled_by": None, "group_id": None, "seq": 0,
            "idempotency_key": spec.get("idempotency_key"),
        }

    async def _op_submit(self, args: dict[str, Any]) -> dict[str, Any]:
        specs = args["tasks"]
        for i, spec in enumerate(specs):
            if spec["kind"] not in self.kinds:
                raise FakePoolError(
                    "unknown_kind", f"unknown task kind {spec['kind']!r}; registered kinds: "
                    f"{', '.join(sorted(self.kinds))}", f"tasks[{i}].kind")
        out = []
        now = time.time()
        for spec in specs:
            key = spec.get("idempotency_key")
            if key is not None and key in self.by_key:
                out.append(self.tasks[self.by_key[key]])
                continue
            rec = self._record(spec, now)
            self.tasks[rec["id"]] = rec
            self.payloads[rec["id"]] = spec["payload"]
            if key is not None:
                self.by_key[key] = rec["id"]
            out.append(rec)
        if args.get("reply") == "ids":
            return {"ids": [r["id"] for r in out]}
        return {"tasks": out}

    def _get(self, task_id: str) -> dict[str, Any]:
        rec = self.tasks.get(task_id)
        if rec is None:
            raise FakePoolError("not_found", f"no task with id {task_id!r}", "id")
        return rec

    async def _op_get(self, args: dict[str, Any]) -> dict[str, Any]:
        rec = self._get(args["id"])
        deadline = time.monotonic() + args.get("wait_s", 0.0)
        while rec["status"] not in FINISHED and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return rec

    async def _op_list(self, args: dict[str, Any]) -> dict[str, Any]:
        recs = [r for r in reversed(self.tasks.values())
                if r["status"] == args.get("status", r["status"])
                and r["kind"] == args.get("kind", r["kind"])]
        limit = args.get("limit", 50)
        return {"tasks": recs[:limit], "next_cursor": "next" if len(recs) > limit else None}

    async def _op_cancel(self, args: dict[str, Any]) -> dict[str, Any]:
        rec = self._get(args["id"])
        if rec["status"] in FINISHED:
            raise FakePoolError("conflict", f"task {rec['id']} already finished "
                                f"({rec['status']}); nothing to cancel")
        if rec["status"] == "running" and not args.get("force"):
            raise FakePoolError("conflict", f"task {rec['id']} is running; "
                                "pass force=true to kill it")
        rec.update(status="cancelled", finished_at=time.time(), cancelled_by=args.get("by"))
        return rec

    async def _op_retry(self, args: dict[str, Any]) -> dict[str, Any]:
        rec = self._get(args["id"])
        if rec["status"] not in ("failed", "cancelled"):
            raise FakePoolError("conflict", f"task {rec['id']} has not failed or been "
                                f"cancelled: {rec['status']}", "id")
        rec.update(status="pending", attempts=0, error=None, result=None, started_at=None,
                   finished_at=None, cancelled_by=None)
        return rec

    async def _op_retry_failed(self, args: dict[str, Any]) -> dict[str, Any]:
        ids = [t["id"] for t in self.tasks.values() if t["status"] == "failed"
               and args.get("kind", t["kind"]) == t["kind"]][:args["limit"]]
        for task_id in ids:
            await self._op_retry({"id": task_id})
        return {"ids": ids}

    async def _op_stats(self, args: dict[str, Any]) -> dict[str, Any]:
        counts = {s: 0 for s in ("pending", "running", "retrying", *FINISHED)}
        for rec in self.tasks.values():
            counts[rec["status"]] += 1
        return {"counts": counts, "queue_depth": counts["pending"],
                "executors": [{"pid": 1234, "state": "idle", "task_id": None, "running": [],
                               "free": 100, "tasks_run": 7, "rss_mb": 31.5}]}

    async def _op_schedules(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"schedules": [{
            "name": "nightly", "kind": "build_report", "spec": "0 3 * * * (Europe/Paris)",
            "source": "offload.toml", "cron": "0 3 * * *", "every_s": None,
            "tz": "Europe/Paris", "catch_up": "latest", "max_delay_s": 3600.0,
            "overlap": "allow", "next_slot": 1796695200.0, "last_slot": 1796608800.0,
            "last_run": {"slot": 1796608800.0, "task_id": "t1", "status": "succeeded"}}]}

    async def _op_health(self, args: dict[str, Any]) -> dict[str, Any]:
        return dict(self.health)

    async def _op_metrics(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"text": "# TYPE offload_pool_up gauge\noffload_pool_up 1.0\n"}

    async def _op_observe_http(self, args: dict[str, Any]) -> dict[str, Any]:
        self.samples.extend(args["samples"])
        return {}
