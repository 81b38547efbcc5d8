"""`mse runs … --server URL`: the same commands and output, read from and sent to a running server."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

from ..diagnostics import Diagnostic, DiagnosticError
from ..llm.usage import describe_totals, run_totals
from ..run import RunResult
from .common import EXIT_INVALID, report_diagnostics
from .remote import ServerClient
from .runs import _emit, _summary, _when

RemoteHandler = Callable[[ServerClient, argparse.Namespace], Coroutine[Any, Any, int]]


async def _list(server: ServerClient, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {}
    if args.status:
        params["status"] = ",".join(args.status)
    if args.limit is not None:
        params["limit"] = args.limit
    runs = (await server.call("GET", "/v1/runs", params=params))["runs"]
    lines = [f"{'RUN':<20} {'TASK':<20} {'STATUS':<12} CREATED (UTC)"]
    lines += [f"{r['run_id']:<20} {r['task_id']:<20} {r['status']:<12} {_when(r['created_at'])}" for r in runs]
    _emit(args, [_summary(r) for r in runs], lines if runs else ["no runs"])
    return 0


async def _show(server: ServerClient, args: argparse.Namespace) -> int:
    run = await server.call("GET", f"/v1/runs/{args.run_id}")
    task = (await server.call("GET", f"/v1/tasks/{run['task_id']}"))["task"]
    entries = run.pop("step_entries")
    for upstream_alias in ("id", "result_ref", "current"):
        run.pop(upstream_alias, None)
    totals = run_totals(e.get("stats") for e in entries)
    document = {**run, "task": task, "step_entries": len(entries), "totals": totals}
    owner = run.get("owner")
    owned_by = "-" if owner is None else f"{owner['host']} pid {owner['pid']}"
    lines = [
        f"run        {run['run_id']}",
        f"task       {run['task_id']}  {task.get('goal') or ''}".rstrip(),
        f"status     {run['status']}",
        f"created    {_when(run['created_at'])}",
        f"updated    {_when(run['updated_at'])}",
        f"owner      {owned_by}",
        f"heartbeat  {_when(run.get('heartbeat_at'))}",
        f"steps      {len(entries)} entries",
        f"resumable  {'yes' if run.get('resumable') else 'no'}",
        f"live       {'yes' if run.get('live') else 'no'}",
        f"result     {json.dumps(run.get('result'), ensure_ascii=False)[:2000]}",
    ]
    if totals["llm_steps"]:
        lines.insert(-1, f"llm        {describe_totals(totals)}")
    _emit(args, document, lines)
    return 0


async def _steps(server: ServerClient, args: argparse.Namespace) -> int:
    steps = (await server.call("GET", f"/v1/runs/{args.run_id}/steps"))["steps"]
    lines = [f"{'STEP':<24} {'ATTEMPT':>7} {'STATUS':<10} {'MS':>10}  STEP ID"]
    for s in steps:
        ms = s.get("duration_ms")
        lines.append(
            f"{s['step_ref']:<24} {s['attempt']:>7} {s['status']:<10} {'-' if ms is None else ms:>10}  {s['step_id']}"
        )
    _emit(args, steps, lines if steps else ["no step entries"])
    return 0


async def _trace(server: ServerClient, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"after": args.after}
    for name in ("limit", "kind", "step"):
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    await server.call("GET", f"/v1/runs/{args.run_id}")
    events = (await server.call("GET", f"/v1/runs/{args.run_id}/trace", params=params))["events"]
    lines = [
        f"{e['seq']:>6} {_when(e['ts'])} {e['kind']:<24} {e.get('step_ref') or '-'} "
        f"{json.dumps(e.get('payload'), ensure_ascii=False)[:200]}"
        for e in events
    ]
    _emit(args, events, lines if events else ["no trace events"])
    return 0


async def _cancel(server: ServerClient, args: argparse.Namespace) -> int:
    before = await server.call("GET", f"/v1/runs/{args.run_id}")
    cancellable = before["status"] in ("pending", "running", "interrupted")
    if cancellable:
        await server.call("POST", f"/v1/runs/{args.run_id}/cancel", ok=(204,))
    status = (await server.call("GET", f"/v1/runs/{args.run_id}"))["status"]
    message = f"run {args.run_id} cancelled" if cancellable else f"run {args.run_id} is already {status}"
    _emit(args, {"run_id": args.run_id, "cancelled": cancellable, "status": status}, [message])
    return 0 if cancellable else 1


async def _prune(server: ServerClient, args: argparse.Namespace) -> int:
    raise DiagnosticError(
        [
            Diagnostic(
                "not-over-http",
                "prune works on a store, not over HTTP",
                hint="run `mse runs prune` on the server's machine (same MSE_HOME or --store)",
                stage="server",
            )
        ]
    )


HANDLERS: dict[str, RemoteHandler] = {
    "list": _list,
    "show": _show,
    "steps": _steps,
    "trace": _trace,
    "cancel": _cancel,
    "prune": _prune,
}


def run_command(args: argparse.Namespace, url: str) -> int:
    """Run `mse runs ACTION` against the server at `url`; bad input and HTTP errors exit 2."""
    server = ServerClient(url, args.admin_token)
    try:
        return asyncio.run(HANDLERS[args.runs_command](server, args))
    except DiagnosticError as exc:
        report_diagnostics(exc.diagnostics, as_json=args.json)
        return EXIT_INVALID


async def resume(server: ServerClient, run_id: str) -> RunResult:
    started = await server.call("POST", f"/v1/runs/{run_id}/resume", ok=(202,))
    return await server.follow(run_id, "resume", replayed=started.get("replayed_steps", 0))


async def rerun_from(server: ServerClient, run_id: str, step: str) -> RunResult:
    started = await server.call("POST", f"/v1/runs/{run_id}/rerun-from", ok=(202,), json={"from_step": step})
    return await server.follow(run_id, f"rerun from {step}", replayed=started.get("replayed_steps", 0))


__all__ = ["HANDLERS", "rerun_from", "resume", "run_command"]
