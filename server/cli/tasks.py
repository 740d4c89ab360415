"""``offload tasks list|get|submit|cancel|retry``: one task or many, over the API."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from executor.store.records import STATUSES
from server.cli.output import Printer, fields, say, table, when
from server.client import Client

NOT_SUCCEEDED = ("failed", "cancelled")


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser],
        common: argparse.ArgumentParser) -> None:
    tasks = sub.add_parser("tasks", parents=[common], help="list, follow, submit, cancel, "
                                                          "re-run tasks")
    cmds = tasks.add_subparsers(dest="tasks_command", metavar="COMMAND", required=True)

    p = cmds.add_parser("list", parents=[common], help="a page of tasks, newest first")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--kind")
    p.add_argument("--limit", type=int, default=20, help="how many (default 20, at most 500)")
    p.add_argument("--cursor", help="next_cursor of the previous page")
    p.set_defaults(run=list_tasks)

    p = cmds.add_parser("get", parents=[common], help="one task's record (exit 1 if it "
                                                     "failed or was cancelled)")
    p.add_argument("id")
    p.add_argument("--wait", type=float, metavar="S",
                   help="wait up to S seconds for it to finish (exit 124 if it has not)")
    p.set_defaults(run=get)

    p = cmds.add_parser("submit", parents=[common], help="submit a task; prints its record")
    p.add_argument("kind")
    p.add_argument("args", nargs="?", default="[]", metavar="ARGS",
                   help='positional arguments as a JSON array, e.g. \'["ada@example.com"]\'')
    p.add_argument("--kwargs", default="{}", metavar="JSON",
                   help="keyword arguments as a JSON object")
    p.add_argument("--delay", type=float, metavar="S", help="run no sooner than S seconds")
    p.add_argument("--priority", type=int)
    p.add_argument("--max-retries", type=int)
    p.add_argument("--timeout", type=float, metavar="S", help="the task's timeout_s")
    p.add_argument("--idempotency-key")
    p.add_argument("--wait", type=float, metavar="S",
                   help="then wait up to S seconds for it to finish, as tasks get --wait")
    p.set_defaults(run=submit)

    p = cmds.add_parser("cancel", parents=[common], help="cancel a task")
    p.add_argument("id")
    p.add_argument("--force", action="store_true", help="also kill it if it is running")
    p.set_defaults(run=cancel)

    p = cmds.add_parser("retry", parents=[common],
                        help="run a failed or cancelled task again, or (--failed) failed tasks")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?")
    which.add_argument("--failed", action="store_true", help="every failed task (of --kind)")
    p.add_argument("--kind", help="with --failed: only this kind")
    p.add_argument("--limit", type=int, default=100,
                   help="with --failed: at most this many (default 100, at most 1000)")
    p.add_argument("--yes", action="store_true", help="with --failed: do not ask first")
    p.set_defaults(run=retry)


def _record_table(rec: dict[str, Any]) -> str:
    error = rec.get("error") or {}
    pairs = [("id", rec["id"]), ("kind", rec["kind"]), ("status", rec["status"]),
             ("attempts", f"{rec['attempts']} of {rec['max_retries'] + 1}"),
             ("created", when(rec["created_at"])), ("started", when(rec["started_at"])),
             ("finished", when(rec["finished_at"])), ("progress", rec.get("progress")),
             ("result", rec.get("result"))]
    if error:
        pairs += [("error", f"{error.get('reason')}: {error.get('message')}")]
    text = fields(pairs)
    if error.get("traceback"):
        text += "\n\n" + error["traceback"].rstrip()
    return text


def _outcome(rec: dict[str, Any]) -> int:
    return 1 if rec["status"] in NOT_SUCCEEDED else 0


def list_tasks(client: Client, args: argparse.Namespace, out: Printer) -> int:
    page = client.list_tasks(status=args.status, kind=args.kind, limit=args.limit,
                             cursor=args.cursor)
    rows = [(t["id"], t["kind"], t["status"], t["attempts"], when(t["created_at"]),
             when(t["finished_at"])) for t in page["tasks"]]
    text = table(("id", "kind", "status", "attempts", "created", "finished"), rows)
    if page.get("next_cursor"):
        text += f"\n\nmore: --cursor {page['next_cursor']}"
    out.result(page, text)
    return 0


def get(client: Client, args: argparse.Namespace, out: Printer) -> int:
    rec = client.get(args.id) if args.wait is None else client.wait(args.id, args.wait)
    out.result(rec, _record_table(rec))
    return _outcome(rec)


def _json_arg(text: str, what: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise UsageError(f"{what} must be a JSON {'array' if kind is list else 'object'}, "
                         f"got {text!r}")
    return value


class UsageError(Exception):
    """A command line that cannot be run (exit 2)."""


def submit(client: Client, args: argparse.Namespace, out: Printer) -> int:
    task_args = _json_arg(args.args, "ARGS", list)
    task_kwargs = _json_arg(args.kwargs, "--kwargs", dict)
    task_id = client.submit_with(args.kind, task_args, task_kwargs, delay_s=args.delay,
                                 priority=args.priority, max_retries=args.max_retries,
                                 timeout_s=args.timeout, idempotency_key=args.idempotency_key)
    if args.wait is None:
        rec = client.get(task_id)
        out.result(rec, task_id)
        return 0
    say(f"submitted {task_id}; waiting up to {args.wait:g} s")
    rec = client.wait(task_id, args.wait)
    out.result(rec, _record_table(rec))
    return _outcome(rec)


def cancel(client: Client, args: argparse.Namespace, out: Printer) -> int:
    rec = client.cancel(args.id, force=args.force)
    out.result(rec, f"{rec['id']} cancelled")
    return 0


def retry(client: Client, args: argparse.Namespace, out: Printer) -> int:
    if not args.failed:
        if args.kind is not None:
            raise UsageError("--kind goes with --failed")
        rec = client.retry(args.id)
        out.result(rec, f"{rec['id']} will run again")
        return 0
    what = f"up to {args.limit} failed tasks" + (f" of kind {args.kind}" if args.kind else "")
    if not args.yes:
        sys.stderr.write(f"Run {what} again? [y/N] ")
        sys.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            say("nothing done")
            return 1
    done = client.retry_failed(kind=args.kind, limit=args.limit)
    out.result(done, f"{done['retried']} failed tasks will run again")
    return 0
