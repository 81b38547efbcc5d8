"""`mse run BLUEPRINT`, `mse runs resume RUN_ID`, `mse runs rerun-from RUN_ID STEP`.

All three compile a Blueprint, open the store, and drive the run with live progress on stderr;
the run is recorded step by step (unless `--ephemeral`), so an interrupted run can be resumed
without paying again for the steps it finished.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..blueprint.compiler import CompiledBlueprint, compile_blueprint
from ..blueprint.loader import load_blueprint_source
from ..core.config import EngineConfig
from ..core.engine import Engine
from ..diagnostics import Diagnostic, DiagnosticError, Location
from ..ids import RunId
from ..run.launch import RunControl, RunResult, Workspace, preflight, run_blueprint
from ..run.progress import TerminalProgress
from ..store import (
    DispatchJournal,
    Durability,
    LaunchSnapshot,
    ResumePlan,
    RunStatus,
    Store,
    StoreError,
    durable_run,
    load_launch,
    open_store,
    prepare_rerun_from,
    prepare_resume,
)
from .common import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    fn_options,
    fn_registry,
    read_object_arg,
    report_diagnostics,
    seconds_arg,
)

DURABILITY_HELP = "sync: fsync every step; batch (default): commit each step before moving on; exit: write at the end"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run a Blueprint (.json, .yaml or .bp.lua)")
    p.add_argument("blueprint", type=Path)
    p.add_argument("--init", help="initial flow ctx: JSON, or @file")
    p.add_argument("--json", action="store_true", help="print one JSON result document on stdout")
    p.add_argument("--ephemeral", action="store_true", help="keep the run in memory only")
    p.add_argument("--store", help="store URL (default: SQLite at $MSE_HOME/mse.sqlite3)")
    p.add_argument("--durability", choices=[d.value for d in Durability], default="batch", help=DURABILITY_HELP)
    p.add_argument("--fn", action="append", default=[], metavar="ID=MODULE:ATTR", help="register a rust_fn id")
    p.add_argument("--timeout", type=seconds_arg, help="fail the run after this many seconds")
    p.add_argument("--work-dir", type=Path, help="write each step's output under DIR/workspace/tasks/<step>/ctx")
    p.add_argument("--project-root", type=Path, help="the project root (used when projection_placement.root says so)")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    try:
        init = read_object_arg(args.init, "--init") if args.init is not None else None
        extra_fns = fn_options(args.fn, str(args.blueprint))
        raw, base_dir = load_blueprint_source(args.blueprint)
        workspace = Workspace(args.work_dir, args.project_root)
        compiled = _compile(raw, base_dir, extra_fns, str(args.blueprint))
        warnings = compiled.diagnostics + asyncio.run(preflight(compiled, workspace))
    except DiagnosticError as exc:
        report_diagnostics(exc.diagnostics, as_json=args.json)
        return EXIT_INVALID
    except ValueError as exc:
        report_diagnostics([Diagnostic("invalid-argument", str(exc), hint="see `mse run --help`")], as_json=args.json)
        return EXIT_INVALID
    report_diagnostics(warnings, as_json=False)
    options = {
        "base_dir": str(base_dir),
        "fns": extra_fns,
        "source": str(args.blueprint),
        "work_dir": str(args.work_dir) if args.work_dir else None,
        "project_root": str(args.project_root) if args.project_root else None,
    }
    launch = LaunchSnapshot(compiled.raw, init, options)

    if args.ephemeral:
        return _finish(args, asyncio.run(execute(None, compiled, init, workspace, args)))

    async def go(store: Store) -> RunResult:
        return await execute(store, compiled, init, workspace, args, launch=launch)

    return _finish(args, _with_store(args, args.store, go))


def resume_main(args: argparse.Namespace) -> int:
    """`mse runs resume RUN_ID`: replay the finished steps, dispatch the rest, under the same run id."""

    async def go(store: Store) -> RunResult:
        plan = await prepare_resume(store, RunId.parse(args.run_id))
        try:
            compiled, workspace = _compile_launch(plan.launch)
        except DiagnosticError:
            await store.try_transition(plan.run.run_id, RunStatus.RUNNING, plan.previous_status)
            raise
        return await execute(store, compiled, plan.launch.init, workspace, args, plan=plan)

    return _finish(args, _with_store(args, args.store, go))


def rerun_from_main(args: argparse.Namespace) -> int:
    """`mse runs rerun-from RUN_ID STEP`: cut the replay log at STEP's first entry and run again from there."""

    async def go(store: Store) -> RunResult:
        run_id = RunId.parse(args.run_id)
        compiled, workspace = _compile_launch(await load_launch(store, run_id))
        plan = await prepare_rerun_from(store, run_id, args.step)
        return await execute(store, compiled, plan.launch.init, workspace, args, plan=plan)

    return _finish(args, _with_store(args, args.store, go))


async def execute(
    store: Store | None,
    compiled: CompiledBlueprint,
    init: Any,
    workspace: Workspace,
    args: argparse.Namespace,
    *,
    launch: LaunchSnapshot | None = None,
    plan: ResumePlan | None = None,
) -> RunResult:
    """Drive one run with progress, signals and the `--timeout`, recorded in `store` (None: kept in
    memory only, nothing recorded); returns its result."""
    secret = await store.token_secret() if store is not None else None
    engine = Engine(EngineConfig(token_secret=secret))
    control = RunControl(plan.run.run_id if plan is not None else RunId.new())
    loop = asyncio.get_running_loop()
    for signum, why in ((signal.SIGINT, "interrupted (Ctrl-C)"), (signal.SIGTERM, "terminated (SIGTERM)")):
        loop.add_signal_handler(signum, control.cancel, why)
    timeout = getattr(args, "timeout", None)
    timer = loop.call_later(timeout, control.cancel, "timeout") if timeout else None
    title = f"{compiled.raw.get('id', 'blueprint')} · {control.run_id}"
    try:
        async with contextlib.AsyncExitStack() as scope:
            journal = None
            if store is not None:
                journal = await scope.enter_async_context(
                    durable_run(
                        store,
                        launch,
                        plan=plan,
                        run_id=control.run_id,
                        goal=str(compiled.raw.get("id", "")),
                        durability=args.durability,
                        on_cancel=lambda: control.cancel("cancelled by `mse runs cancel`"),
                    )
                )
            with TerminalProgress(title) as progress:
                result = await run_blueprint(
                    compiled,
                    init,
                    engine=engine,
                    control=control,
                    journal=DispatchJournal(journal) if journal is not None else None,
                    observer=progress,
                    workspace=workspace,
                )
            if result.status == "cancelled" and control.reason == "timeout":
                result.status = "failed"
                result.error = {
                    "message": f"run exceeded --timeout {timeout}s",
                    "failed_step": None,
                    "verdict_value": None,
                }
            if journal is not None:
                await journal.finish(RunStatus(result.status), _stored_result(result))
        replayed = f", {result.steps_replayed} replayed" if result.steps_replayed else ""
        progress.console.print(f"■ {result.status}: {progress.summary()}{replayed}", highlight=False, markup=False)
    finally:
        if timer is not None:
            timer.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return result


def _stored_result(result: RunResult) -> Any:
    """What the run record keeps: the final ctx, or the error with the partial ctx."""
    if result.status == "done":
        return result.final_ctx
    return {"error": result.error, "partial_ctx": result.partial_ctx}


def _compile(raw: Any, base_dir: Path, extra_fns: Mapping[str, str], source: str | None) -> CompiledBlueprint:
    return compile_blueprint(raw, base_dir=base_dir, fns=fn_registry(extra_fns, base_dir, source), source=source)


def _compile_launch(launch: LaunchSnapshot) -> tuple[CompiledBlueprint, Workspace]:
    """Compile a stored launch snapshot exactly as `mse run` did."""
    options = launch.options
    base_dir = Path(options.get("base_dir") or ".")
    compiled = _compile(launch.blueprint, base_dir, options.get("fns") or {}, options.get("source"))
    work_dir, project_root = options.get("work_dir"), options.get("project_root")
    workspace = Workspace(Path(work_dir) if work_dir else None, Path(project_root) if project_root else None)
    return compiled, workspace


def _with_store(args: argparse.Namespace, url: str | None, go: Any) -> RunResult | list[Diagnostic]:
    """Open the store, run `go(store)`, close it; store and input errors come back as diagnostics."""

    async def main() -> RunResult | list[Diagnostic]:
        try:
            store = await open_store(url, durability=args.durability)
        except StoreError as exc:
            return [_store_diagnostic(exc)]
        try:
            result: RunResult = await go(store)
            return result
        except StoreError as exc:
            return [_store_diagnostic(exc)]
        except DiagnosticError as exc:
            return exc.diagnostics
        except ValueError as exc:
            return [Diagnostic("invalid-argument", str(exc), hint="run ids look like R-0123456789abcdef")]
        finally:
            await store.close()

    return asyncio.run(main())


def _store_diagnostic(exc: StoreError) -> Diagnostic:
    return Diagnostic(exc.code, exc.message, location=Location("store"), hint=exc.hint or None, stage="store")


def _finish(args: argparse.Namespace, outcome: RunResult | list[Diagnostic]) -> int:
    if isinstance(outcome, list):
        report_diagnostics(outcome, as_json=args.json)
        return EXIT_INVALID
    result = outcome
    if args.json:
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


__all__ = ["execute", "register", "rerun_from_main", "resume_main"]
