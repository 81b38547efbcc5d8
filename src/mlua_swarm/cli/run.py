"""`mse run BLUEPRINT`: compile and run a Blueprint with live progress on stderr."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from ..blueprint.compiler import compile_blueprint
from ..blueprint.loader import load_blueprint_source
from ..diagnostics import Diagnostic, DiagnosticError, Location
from ..run.launch import RunControl, RunResult, Workspace, preflight, run_blueprint
from ..run.progress import TerminalProgress
from ..worker.pyfn import function_registry, parse_fn_option
from .common import EXIT_CANCELLED, EXIT_FAILED, EXIT_INVALID, EXIT_OK, read_json_arg, report_diagnostics


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run a Blueprint (.json, .yaml or .bp.lua)")
    p.add_argument("blueprint", type=Path)
    p.add_argument("--init", help="initial flow ctx: JSON, or @file")
    p.add_argument("--json", action="store_true", help="print one JSON result document on stdout")
    p.add_argument("--ephemeral", action="store_true", help="keep the run in memory only")
    p.add_argument("--store", help="store URL (default: SQLite under $MSE_HOME)")
    p.add_argument("--fn", action="append", default=[], metavar="ID=MODULE:ATTR", help="register a rust_fn id")
    p.add_argument("--timeout", type=float, help="fail the run after this many seconds")
    p.add_argument("--work-dir", type=Path, help="write each step's output under DIR/workspace/tasks/<step>/ctx")
    p.add_argument("--project-root", type=Path, help="the project root (used when projection_placement.root says so)")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    try:
        init = read_json_arg(args.init, "--init") if args.init is not None else None
        extra_fns = dict(parse_fn_option(option) for option in args.fn)
        raw, base_dir = load_blueprint_source(args.blueprint)
        try:
            fns = function_registry(extra_fns, base_dir)
        except (ImportError, AttributeError, ValueError) as exc:
            raise DiagnosticError(
                [
                    Diagnostic(
                        "invalid-argument",
                        f"--fn: {exc}",
                        location=Location(),
                        hint="use --fn ID=package.module:function with an importable module",
                    )
                ]
            ) from None
        compiled = compile_blueprint(raw, base_dir=base_dir, fns=fns)
        workspace = Workspace(args.work_dir, args.project_root)
        warnings = compiled.diagnostics + asyncio.run(preflight(compiled, workspace))
    except DiagnosticError as exc:
        report_diagnostics(exc.diagnostics, as_json=args.json)
        return EXIT_INVALID
    except ValueError as exc:
        report_diagnostics([Diagnostic("invalid-argument", str(exc), hint="see `mse run --help`")], as_json=args.json)
        return EXIT_INVALID
    for warning in warnings:
        print(warning.render(), file=sys.stderr)
    title = f"{compiled.raw.get('id', args.blueprint.name)}"
    result = asyncio.run(_run(compiled, init, title, args.timeout, workspace))
    return _report(result, as_json=args.json)


async def _run(compiled: Any, init: Any, title: str, timeout: float | None, workspace: Workspace) -> RunResult:
    control = RunControl()
    loop = asyncio.get_running_loop()
    for signum, why in ((signal.SIGINT, "interrupted (Ctrl-C)"), (signal.SIGTERM, "terminated (SIGTERM)")):
        loop.add_signal_handler(signum, control.cancel, why)
    timer = loop.call_later(timeout, control.cancel, "timeout") if timeout else None
    try:
        with TerminalProgress(f"{title} · {control.run_id}") as progress:
            result = await run_blueprint(compiled, init, control=control, observer=progress, workspace=workspace)
        progress.console.print(f"■ {result.status}: {progress.summary()}", highlight=False, markup=False)
    finally:
        if timer is not None:
            timer.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if result.status == "cancelled" and control.reason == "timeout":
        result.status = "failed"
        result.error = {"message": f"run exceeded --timeout {timeout}s", "failed_step": None, "verdict_value": None}
    return result


def _report(result: RunResult, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    elif result.status == "done":
        print(json.dumps(result.final_ctx, indent=2, ensure_ascii=False))
    else:
        error = result.error or {}
        print(f"run {result.run_id} {result.status}: {error.get('message')}", file=sys.stderr)
        if error.get("failed_step"):
            print(f"  failed step: {error['failed_step']}  verdict: {error.get('verdict_value')!r}", file=sys.stderr)
    if result.status == "done":
        return EXIT_OK
    return EXIT_CANCELLED if result.status == "cancelled" else EXIT_FAILED


__all__ = ["register"]
