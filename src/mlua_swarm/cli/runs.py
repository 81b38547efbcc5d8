"""`mse runs list|show|steps|trace|cancel|prune|resume|rerun-from`: inspect and manage stored runs."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..store.listing import RUN_STATUSES, local_store_file, quick_run_list
from ..termtext import terminal_text
from .argtypes import count_arg
from .endpoint import server_url

if TYPE_CHECKING:
    from ..store import Store

# The store, the run layer and asyncio are imported when a command opens the store: `mse runs list`
# usually answers from one query (`store.listing`) without them.

Handler = Callable[["Store", argparse.Namespace], Awaitable[int]]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """`90`, `30s`, `15m`, `12h`, `7d`, `2w` as seconds."""
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: use a number with s, m, h, d or w (e.g. 7d)")
    return float(m.group(1)) * _UNIT_SECS[m.group(2)]


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _emit(args: argparse.Namespace, document: Any, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(document, ensure_ascii=False))
    else:
        print(terminal_text("\n".join(lines)))


def _fail(args: argparse.Namespace, code: str, message: str, hint: str = "") -> int:
    print(f"error[{code}]: {message}" + (f"\n  hint: {hint}" if hint else ""), file=sys.stderr)
    if args.json:
        print(json.dumps({"error": {"code": code, "message": message, "hint": hint}}))
    return 2


def _summary(run_json: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run_json.items() if k != "result"}


# The text forms of `list`, `show`, `steps` and `trace`, from the JSON documents that `--json` prints:
# the local store and a server (`runs_remote`) print through the same functions.


def list_lines(runs: list[dict[str, Any]]) -> list[str]:
    if not runs:
        return ["no runs"]
    lines = [f"{'RUN':<20} {'TASK':<20} {'STATUS':<12} CREATED (UTC)"]
    lines += [f"{r['run_id']:<20} {r['task_id']:<20} {r['status']:<12} {_when(r['created_at'])}" for r in runs]
    return lines


def show_lines(document: dict[str, Any]) -> list[str]:
    """`document` is a run's record plus `task`, `step_entries` (a count) and `totals`; `replay_rows`
    (local store) and `live` (server) are shown when present."""
    owner = document.get("owner")
    steps = f"{document['step_entries']} entries"
    if "replay_rows" in document:
        steps += f", {document['replay_rows']} replayable"
    lines = [
        f"run        {document['run_id']}",
        f"task       {document['task_id']}  {document['task'].get('goal') or ''}".rstrip(),
        f"status     {document['status']}",
        f"created    {_when(document['created_at'])}",
        f"updated    {_when(document['updated_at'])}",
        f"owner      {'-' if owner is None else '{host} pid {pid}'.format(**owner)}",
        f"heartbeat  {_when(document.get('heartbeat_at'))}",
        f"steps      {steps}",
        f"resumable  {'yes' if document.get('resumable') else 'no'}",
    ]
    if "live" in document:
        lines.append(f"live       {'yes' if document['live'] else 'no'}")
    if document["totals"]["llm_steps"]:
        from ..llm.usage import describe_totals

        lines.append(f"llm        {describe_totals(document['totals'])}")
    lines.append(f"result     {json.dumps(document.get('result'), ensure_ascii=False)[:2000]}")
    return lines


def step_lines(steps: list[dict[str, Any]]) -> list[str]:
    if not steps:
        return ["no step entries"]
    lines = [f"{'STEP':<24} {'ATTEMPT':>7} {'STATUS':<10} {'MS':>10}  STEP ID"]
    for s in steps:
        ms = s.get("duration_ms")
        lines.append(
            f"{s['step_ref']:<24} {s['attempt']:>7} {s['status']:<10} {'-' if ms is None else ms:>10}  {s['step_id']}"
        )
    return lines


def trace_lines(events: list[dict[str, Any]]) -> list[str]:
    if not events:
        return ["no trace events"]
    return [
        f"{e['seq']:>6} {_when(e['ts'])} {e['kind']:<24} {e.get('step_ref') or '-'} "
        f"{json.dumps(e.get('payload'), ensure_ascii=False)[:200]}"
        for e in events
    ]


def _list_quickly(args: argparse.Namespace) -> int:
    """`mse runs list` from one read-only query when it can answer (see `store.listing`), else by
    opening the store (which migrates, sweeps orphans and reports a bad file) as every command does."""
    if server_url(args.server, local=args.local) is None:
        runs = quick_run_list(args.store, statuses=args.status or None, limit=args.limit)
        if runs is not None:
            _emit(args, runs, list_lines(runs))
            return 0
    return _run(_list)(args)


async def _list(store: Store, args: argparse.Namespace) -> int:
    from ..store import RunStatus

    status = None if not args.status else [RunStatus(s) for s in args.status]
    runs = [r.to_json() for r in await store.list_runs(status=status, limit=args.limit, with_result=False)]
    _emit(args, [_summary(r) for r in runs], list_lines(runs))
    return 0


async def _show(store: Store, args: argparse.Namespace) -> int:
    from ..llm.usage import run_totals

    run = await store.get_run(args.run_id)
    task = await store.get_task(run.task_id)
    steps = await store.list_steps(run.run_id)
    _, replay = await store.count_history(run.run_id)
    document = {
        **run.to_json(),
        "task": task.to_json(),
        "step_entries": len(steps),
        "replay_rows": replay,
        "totals": run_totals(s.stats for s in steps),
    }
    _emit(args, document, show_lines(document))
    return 0


async def _steps(store: Store, args: argparse.Namespace) -> int:
    await store.get_run(args.run_id, with_result=False)
    steps = [s.to_json() for s in await store.list_steps(args.run_id)]
    _emit(args, steps, step_lines(steps))
    return 0


async def _trace(store: Store, args: argparse.Namespace) -> int:
    await store.get_run(args.run_id, with_result=False)
    events = await store.list_trace(
        args.run_id, after=args.after, limit=args.limit, kind_prefix=args.kind, step_ref=args.step
    )
    documents = [e.to_json() for e in events]
    _emit(args, documents, trace_lines(documents))
    return 0


async def _cancel(store: Store, args: argparse.Namespace) -> int:
    from ..run import Run  # the run layer loads the engine; listing commands stay light

    cancelled = await Run.request_cancel(store, args.run_id)
    run = await store.get_run(args.run_id, with_result=False)
    message = f"run {run.run_id} cancelled" if cancelled else f"run {run.run_id} is already {run.status.value}"
    _emit(args, {"run_id": run.run_id, "cancelled": cancelled, "status": run.status.value}, [message])
    return 0 if cancelled else 1


async def _prune(store: Store, args: argparse.Namespace) -> int:
    if args.older_than is None and args.keep is None:
        return _fail(args, "bad_arguments", "prune needs --older-than, --keep, or both", "e.g. --older-than 7d")
    pruned = await store.prune(older_than=args.older_than, keep=args.keep, include_interrupted=args.interrupted)
    _emit(args, {"pruned": pruned}, [f"pruned {pruned} run(s)"])
    return 0


def _run(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        url = server_url(args.server, local=args.local)
        if url is not None:
            from .runs_remote import run_command

            return run_command(args, url)

        import asyncio

        from ..ids import RunId
        from ..store import StoreError, open_store
        from ..store.errors import UNREADABLE_ROW_ERRORS, StoreUnusable

        async def go() -> int:
            store = await open_store(args.store)
            try:
                return await handler(store, args)
            finally:
                await store.close()

        try:
            if getattr(args, "run_id", None) is not None:
                args.run_id = RunId.parse(args.run_id)
        except ValueError as exc:
            return _fail(args, "bad_arguments", str(exc))
        try:
            return asyncio.run(go())
        except StoreError as exc:
            return _fail(args, exc.code, exc.message, exc.hint)
        except UNREADABLE_ROW_ERRORS as exc:
            error = StoreUnusable.unreadable(local_store_file(args.store) or args.store, exc)
            return _fail(args, error.code, error.message, error.hint)

    return command


def _resume(args: argparse.Namespace) -> int:
    from .run import resume_main  # the compiler and engine: only when a run is resumed

    return resume_main(args)


def _rerun_from(args: argparse.Namespace) -> int:
    from .run import rerun_from_main

    return rerun_from_main(args)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `mse runs ...`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store", metavar="URL", help="memory://, sqlite:///path, a path or postgresql://... (default $MSE_HOME)"
    )
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    common.add_argument("--server", metavar="URL", help="ask a running `mse serve` (default: $MSE_HTTP when set)")
    common.add_argument("--admin-token", help="the server's admin token (default: $MSE_ADMIN_TOKEN)")
    common.add_argument("--local", action="store_true", help="read the local store even when MSE_HTTP is set")

    runs = subparsers.add_parser("runs", help="inspect and manage stored runs")
    sub = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", parents=[common], help="runs, newest first")
    p.add_argument("--status", action="append", choices=RUN_STATUSES, help="repeatable filter")
    p.add_argument("--limit", type=count_arg, default=None)
    p.set_defaults(handler=_list_quickly)

    for name, handler, text in (
        ("show", _show, "one run: status, owner, result"),
        ("steps", _steps, "a run's step entries"),
        ("cancel", _cancel, "cancel a pending, running or interrupted run"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("run_id", metavar="RUN_ID")
        p.set_defaults(handler=_run(handler))

    p = sub.add_parser("trace", parents=[common], help="a run's trace events")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--after", type=count_arg, default=0, help="only events with a greater seq")
    p.add_argument("--limit", type=count_arg, default=None)
    p.add_argument("--kind", default=None, help="kind prefix, e.g. core.")
    p.add_argument("--step", default=None, help="only this step_ref")
    p.set_defaults(handler=_run(_trace))

    p = sub.add_parser("prune", parents=[common], help="delete done, failed and cancelled runs by age and/or count")
    p.add_argument("--older-than", type=parse_duration, default=None, metavar="AGE", help="e.g. 7d, 12h")
    p.add_argument("--keep", type=count_arg, default=None, metavar="N", help="keep the newest N runs")
    p.add_argument(
        "--interrupted", action="store_true", help="also delete interrupted runs (they could still be resumed)"
    )
    p.set_defaults(handler=_run(_prune))

    durability = ("sync", "batch", "exit")
    p = sub.add_parser("resume", parents=[common], help="resume an interrupted run, replaying finished steps")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--durability", choices=durability, default="batch")
    p.set_defaults(handler=_resume)

    p = sub.add_parser("rerun-from", parents=[common], help="re-run a finished run from one step on")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("step", metavar="STEP")
    p.add_argument("--durability", choices=durability, default="batch")
    p.set_defaults(handler=_rerun_from)
