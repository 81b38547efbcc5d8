"""`mse run BLUEPRINT`, `mse runs resume RUN_ID`, `mse runs rerun-from RUN_ID STEP`.

All three compile a Blueprint, open the store, and drive the run with live progress on stderr;
the run is recorded step by step (unless `--ephemeral`), so an interrupted run can be resumed
without paying again for the steps it finished.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..diagnostics import Diagnostic, DiagnosticError, Location
from ..ids import RunId
from ..store import Durability, LaunchSnapshot, Store, StoreError, open_store
from ..store.errors import UNREADABLE_ROW_ERRORS, StoreUnusable
from ..store.listing import local_store_file
from .argtypes import seconds_arg
from .common import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    fn_options,
    fn_registry,
    freeze_heap,
    read_object_arg,
    report_diagnostics,
)
from .endpoint import server_url

if TYPE_CHECKING:
    from ..run import Run, RunResult

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
    p.add_argument("--work-dir", type=Path, help="write each step's output under DIR/workspace/tasks/<step id>/ctx")
    p.add_argument("--project-root", type=Path, help="the project root (used when projection_placement.root says so)")
    p.add_argument("--server", metavar="URL", help="launch on a running `mse serve` (default: $MSE_HTTP when set)")
    p.add_argument("--admin-token", help="the server's admin token (default: $MSE_ADMIN_TOKEN)")
    p.add_argument("--local", action="store_true", help="run in this process even when MSE_HTTP is set")
    p.add_argument(
        "--operator-sid",
        metavar="S-…",
        help="with --server: the operator session that holds the run's seats (from `mse operator join`, "
        "the dashboard's operator console or mse_operator_join)",
    )
    p.add_argument("--operator-desc", metavar="TEXT", help="with --operator-sid: who holds the seats (default: you)")
    p.add_argument(
        "--operator-slot", metavar="SEAT", help="with --operator-sid: the seat it holds when several are declared"
    )
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    # The compiler, the engine and the live view load only when a run starts, not for `--help`.
    from ..blueprint.compiler import compile_blueprint
    from ..blueprint.loader import load_blueprint_source
    from ..run import Run, Workspace, launch_options

    try:
        init = read_object_arg(args.init, "--init") if args.init is not None else None
        source = str(args.blueprint)
        extra_fns = fn_options(args.fn, source)
        raw, base_dir = load_blueprint_source(args.blueprint)
        workspace = Workspace(args.work_dir, args.project_root)
        compiled = compile_blueprint(
            raw, base_dir=base_dir, fns=fn_registry(extra_fns, base_dir, source), source=source
        )
    except DiagnosticError as exc:
        report_diagnostics(exc.diagnostics, as_json=args.json)
        return EXIT_INVALID
    except ValueError as exc:
        report_diagnostics([Diagnostic("invalid-argument", str(exc), hint="see `mse run --help`")], as_json=args.json)
        return EXIT_INVALID
    report_diagnostics(compiled.diagnostics, as_json=False)
    url = server_url(args.server, local=args.local)
    if url is not None:
        return _finish(args, _remote_launch(args, url, compiled.raw, init, base_dir))
    operator_flags = [flag for name, flag in OPERATOR_FLAGS if getattr(args, name) is not None]
    if operator_flags:
        return _finish(args, [operator_flags_need_a_server(operator_flags)])
    options = launch_options(workspace, base_dir=base_dir, fns=extra_fns, source=source)
    launch = LaunchSnapshot(compiled.raw, init, options)

    async def go(store: Store | None) -> RunResult:
        run = Run(
            compiled,
            store=store,
            durability=args.durability,
            timeout=args.timeout,
            workspace=workspace,
            launch=launch,
        )
        return await drive(run, init, warn=False)

    return _finish(args, _session(args, go, "see `mse run --help`"))


OPERATOR_FLAGS = (
    ("operator_sid", "--operator-sid"),
    ("operator_desc", "--operator-desc"),
    ("operator_slot", "--operator-slot"),
)


def operator_flags_need_a_server(flags: list[str]) -> Diagnostic:
    """Seats exist only on a server: a local run has no operator session to pin."""
    return Diagnostic(
        "invalid-argument",
        f"{', '.join(flags)} {'pins' if len(flags) == 1 else 'pin'} the seats of a run on a server,"
        " and this run is local",
        location=Location("command line"),
        hint="add --server URL (or set MSE_HTTP) to launch on `mse serve`",
        stage="server",
    )


def _remote_launch(
    args: argparse.Namespace, url: str, blueprint: dict[str, Any], init: Any, base_dir: Path
) -> RunResult | list[Diagnostic]:
    """`mse run --server URL`: launch detached on the server and follow the run's events."""
    from .remote import launch_and_follow, launch_body, session

    try:
        body = launch_body(args, blueprint, init, base_dir)
    except DiagnosticError as exc:
        return exc.diagnostics
    title = str(blueprint.get("id") or "blueprint")
    return session(url, args.admin_token, lambda server: launch_and_follow(server, body, title))


def _remote(args: argparse.Namespace) -> str | None:
    """The server `mse runs resume|rerun-from` talk to, if any."""
    return server_url(getattr(args, "server", None), local=getattr(args, "local", False))


def resume_main(args: argparse.Namespace) -> int:
    """`mse runs resume RUN_ID`: replay the finished steps, dispatch the rest, under the same run id."""
    url = _remote(args)
    if url is not None:
        from .remote import session
        from .runs_remote import resume

        return _finish(args, session(url, args.admin_token, lambda server: resume(server, args.run_id)))

    async def go(store: Store | None) -> RunResult:
        from ..run import Run

        assert store is not None
        return await drive(await Run.resume(store, RunId.parse(args.run_id), durability=args.durability))

    return _finish(args, _session(args, go, RUN_ID_HINT))


def rerun_from_main(args: argparse.Namespace) -> int:
    """`mse runs rerun-from RUN_ID STEP`: cut the replay log at STEP's first entry and run again from there."""
    url = _remote(args)
    if url is not None:
        from .remote import session
        from .runs_remote import rerun_from

        return _finish(args, session(url, args.admin_token, lambda server: rerun_from(server, args.run_id, args.step)))

    async def go(store: Store | None) -> RunResult:
        from ..run import Run

        assert store is not None
        run = await Run.rerun_from(store, RunId.parse(args.run_id), args.step, durability=args.durability)
        return await drive(run)

    return _finish(args, _session(args, go, RUN_ID_HINT))


SIGNALS = ((signal.SIGINT, "interrupted (Ctrl-C)"), (signal.SIGTERM, "terminated (SIGTERM)"))
RUN_ID_HINT = "run ids look like R-0123456789abcdef"


async def drive(run: Run, init: Any = None, *, warn: bool = True) -> RunResult:
    """Execute `run` with live progress on stderr, Ctrl-C and SIGTERM cancelling it; its result.

    `warn` prints the middleware warnings first (`mse run` printed them with the compile's)."""
    from ..run.progress import TerminalProgress

    progress = TerminalProgress(f"{run.compiled.id} · {run.run_id}")
    run.observer = progress
    loop = asyncio.get_running_loop()
    for signum, why in SIGNALS:
        loop.add_signal_handler(signum, run.cancel, why)
    freeze_heap()
    try:
        async with run:
            if warn:
                report_diagnostics(run.warnings, as_json=False)
            with progress:
                result = await run.execute(init)
        progress.console.print(f"■ {result.status}: {progress.summary()}", highlight=False, markup=False)
    finally:
        for signum, _ in SIGNALS:
            loop.remove_signal_handler(signum)
    return result


def _session(
    args: argparse.Namespace, go: Callable[[Store | None], Awaitable[RunResult]], hint: str
) -> RunResult | list[Diagnostic]:
    """Open the store (none with `--ephemeral`), run `go(store)`, close it; store and input errors
    come back as diagnostics."""

    async def main() -> RunResult | list[Diagnostic]:
        store = None
        try:
            if getattr(args, "run_id", None) is not None:
                RunId.parse(args.run_id)
            if not getattr(args, "ephemeral", False):
                store = await open_store(args.store, durability=args.durability)
            return await go(store)
        except StoreError as exc:
            return [_store_diagnostic(exc)]
        except DiagnosticError as exc:
            return exc.diagnostics
        except ValueError as exc:
            if store is None:
                return [Diagnostic("invalid-argument", str(exc), hint=hint)]
            return [_store_diagnostic(StoreUnusable.unreadable(local_store_file(args.store), exc))]
        except UNREADABLE_ROW_ERRORS as exc:
            return [_store_diagnostic(StoreUnusable.unreadable(local_store_file(args.store), exc))]
        finally:
            if store is not None:
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
            verdict = error.get("verdict_value")
            shown = "" if verdict is None else f"  verdict: {json.dumps(verdict, ensure_ascii=False)}"
            print(f"  failed step: {error['failed_step']}{shown}", file=sys.stderr)
    if result.status == "done":
        return EXIT_OK
    return EXIT_CANCELLED if result.status == "cancelled" else EXIT_FAILED


__all__ = ["drive", "register", "rerun_from_main", "resume_main"]
