"""`mse runs … --server URL`: the same commands and output, read from and sent to a running server."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from ..diagnostics import Diagnostic, DiagnosticError, Location
from ..llm.usage import run_totals
from ..paths import url_segment
from ..run import RunResult
from .common import EXIT_INVALID, report_diagnostics
from .remote import ServerClient, Started
from .runs import _emit, _summary, list_lines, show_lines, step_lines, trace_lines

RemoteHandler = Callable[[ServerClient, argparse.Namespace], Coroutine[Any, Any, int]]


async def _list(server: ServerClient, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {}
    if args.status:
        params["status"] = ",".join(args.status)
    if args.limit is not None:
        params["limit"] = args.limit
    runs = (await server.call("GET", "/v1/runs", params=params))["runs"]
    _emit(args, [_summary(r) for r in runs], list_lines(runs))
    return 0


async def _show(server: ServerClient, args: argparse.Namespace) -> int:
    run = await server.call("GET", f"/v1/runs/{url_segment(args.run_id)}")
    task = (await server.call("GET", f"/v1/tasks/{url_segment(run['task_id'])}"))["task"]
    entries = run.pop("step_entries")
    for upstream_alias in ("id", "result_ref", "current"):
        run.pop(upstream_alias, None)
    document = {
        **run,
        "task": task,
        "step_entries": len(entries),
        "totals": run_totals(e.get("stats") for e in entries),
    }
    document["live"] = bool(run.get("live"))
    _emit(args, document, show_lines(document))
    return 0


async def _steps(server: ServerClient, args: argparse.Namespace) -> int:
    steps = (await server.call("GET", f"/v1/runs/{url_segment(args.run_id)}/steps"))["steps"]
    _emit(args, steps, step_lines(steps))
    return 0


async def _trace(server: ServerClient, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"after": args.after}
    for name in ("limit", "kind", "step"):
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    await server.call("GET", f"/v1/runs/{url_segment(args.run_id)}")
    events = (await server.call("GET", f"/v1/runs/{url_segment(args.run_id)}/trace", params=params))["events"]
    _emit(args, events, trace_lines(events))
    return 0


async def _cancel(server: ServerClient, args: argparse.Namespace) -> int:
    before = await server.call("GET", f"/v1/runs/{url_segment(args.run_id)}")
    cancellable = before["status"] in ("pending", "running", "interrupted")
    if cancellable:
        await server.call("POST", f"/v1/runs/{url_segment(args.run_id)}/cancel", ok=(204,))
    status = (await server.call("GET", f"/v1/runs/{url_segment(args.run_id)}"))["status"]
    message = f"run {args.run_id} cancelled" if cancellable else f"run {args.run_id} is already {status}"
    _emit(args, {"run_id": args.run_id, "cancelled": cancellable, "status": status}, [message])
    return 0 if cancellable else 1


async def _prune(server: ServerClient, args: argparse.Namespace) -> int:
    raise DiagnosticError(
        [
            Diagnostic(
                "not-over-http",
                "prune works on a store, not over HTTP",
                location=Location("command line"),
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
    async def start() -> Started:
        after = await server.last_seq(run_id)
        started = await server.call("POST", f"/v1/runs/{url_segment(run_id)}/resume", ok=(202,))
        return Started(run_id, after, started.get("replayed_steps", 0))

    return await server.follow("resume", start)


async def rerun_from(server: ServerClient, run_id: str, step: str) -> RunResult:
    async def start() -> Started:
        after = await server.last_seq(run_id)
        path = f"/v1/runs/{url_segment(run_id)}/rerun-from"
        started = await server.call("POST", path, ok=(202,), json={"from_step": step})
        return Started(run_id, after, started.get("replayed_steps", 0))

    return await server.follow(f"rerun from {step}", start)


__all__ = ["HANDLERS", "rerun_from", "resume", "run_command"]
