"""`mse bp`: Blueprint tools (`lint`, `schema`).

Other modules add sub-commands to `mse bp` by defining `register_bp(bp_subparsers)` and being
listed in `BP_EXTENSIONS` (for example the Lua DSL's `bp build` and `bp new`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from ..diagnostics import Diagnostic, DiagnosticError, Level
from .common import EXIT_INVALID, EXIT_OK, fn_options, fn_registry, report_diagnostics

# Modules under `mlua_swarm.cli` that add sub-commands to `mse bp`; each defines `register_bp(bp_subparsers)`.
BP_EXTENSIONS: tuple[str, ...] = ("bp_dsl",)

EXIT_WARNINGS = 1


def register(subparsers: Any) -> None:
    """Add the `bp` command group to the `mse` parser."""
    bp = subparsers.add_parser("bp", help="Blueprint tools: lint, schema, build, new", description="Blueprint tools.")
    bp_sub = bp.add_subparsers(dest="bp_command", metavar="BP_COMMAND", required=True)

    lint = bp_sub.add_parser("lint", help="check a Blueprint (.json, .yaml, .bp.lua) and report diagnostics")
    lint.add_argument("file", type=Path, help="the Blueprint file")
    lint.add_argument("--strict", action="store_true", help="fail on warnings (exit 1) and on unhandled verdicts")
    lint.add_argument("--json", action="store_true", help="print the diagnostics as one JSON document on stdout")
    lint.add_argument(
        "--fn", action="append", default=[], metavar="ID=MODULE:ATTR", help="register a function id for rust_fn agents"
    )
    lint.add_argument(
        "--include", action="append", default=[], type=Path, metavar="DIR", help="a folder for $file / $agent_md"
    )
    lint.set_defaults(handler=lint_command)

    schema = bp_sub.add_parser("schema", help="print the JSON Schema of a Blueprint document")
    schema.set_defaults(handler=schema_command)

    for name in BP_EXTENSIONS:
        importlib.import_module(f"mlua_swarm.cli.{name}").register_bp(bp_sub)


def lint_diagnostics(args: argparse.Namespace) -> tuple[list[Diagnostic], Any]:
    """Every diagnostic `mse bp lint` reports for the file (load warnings, then compile findings),
    and the Blueprint value it read (None when it could not be read)."""
    from ..blueprint.compiler import compile_blueprint
    from ..blueprint.loader import load_blueprint_source

    warnings: list[Diagnostic] = []
    try:
        raw, base_dir = load_blueprint_source(args.file, warnings=warnings, includes=args.include)
        source = str(args.file)
        fns = fn_registry(fn_options(args.fn, source), base_dir, source)
    except DiagnosticError as exc:
        return warnings + exc.diagnostics, None
    try:
        compiled = compile_blueprint(
            raw, base_dir=base_dir, fns=fns, strict=args.strict, includes=args.include, source=str(args.file)
        )
    except DiagnosticError as exc:
        return warnings + exc.diagnostics, raw
    return warnings + compiled.diagnostics, raw


def exit_code(diagnostics: list[Diagnostic], strict: bool) -> int:
    """2 when anything is an error, 1 for warnings under `--strict`, else 0."""
    if any(d.level is Level.ERROR for d in diagnostics):
        return EXIT_INVALID
    if strict and any(d.level is Level.WARN for d in diagnostics):
        return EXIT_WARNINGS
    return EXIT_OK


def verdict_line(prefix: str, diagnostics: list[Diagnostic], blueprint: Any) -> str:
    """Upstream's one-line verdict, e.g. `bp lint: OK (2 agent(s), 1 operator(s) checked)`.

    Scripts and CI grep for `<prefix>: OK`; WARN and ERROR add the counts of findings. A failed
    `compile lint` also reads `compile lint FAILED`, the words upstream prints on that failure.
    """
    value = blueprint if isinstance(blueprint, dict) else {}
    agents, operators = value.get("agents"), value.get("operators")
    checked = (
        f"{len(agents) if isinstance(agents, list) else 0} agent(s), "
        f"{len(operators) if isinstance(operators, list) else 0} operator(s) checked"
    )
    errors = sum(d.level is Level.ERROR for d in diagnostics)
    warns = sum(d.level is Level.WARN for d in diagnostics)
    if errors:
        failed = " FAILED" if prefix == "compile lint" else ""
        return f"{prefix}{failed}: ERROR ({checked}) — {errors} error(s), {warns} warning(s)"
    if warns:
        return f"{prefix}: WARN ({checked}) — {warns} warning(s)"
    return f"{prefix}: OK ({checked})"


def lint_command(args: argparse.Namespace) -> int:
    diagnostics, blueprint = lint_diagnostics(args)
    code = exit_code(diagnostics, args.strict)
    status = {EXIT_OK: "ok", EXIT_WARNINGS: "warnings", EXIT_INVALID: "error"}[code]
    if args.json:
        document = {"file": str(args.file), "status": status, "diagnostics": [d.to_json() for d in diagnostics]}
        print(json.dumps(document, indent=2))
    else:
        report_diagnostics(diagnostics, as_json=False)
    # As upstream: DSL authoring warnings are printed (and fail --strict) but leave the verdict OK.
    judged = [d for d in diagnostics if not (d.stage == "dsl" and d.level is Level.WARN)]
    print(verdict_line("bp lint", judged, blueprint), file=sys.stderr)
    return code


def schema_command(args: argparse.Namespace) -> int:
    from ..blueprint.schema import blueprint_json_schema

    print(json.dumps(blueprint_json_schema(), indent=2))
    return EXIT_OK


__all__ = [
    "BP_EXTENSIONS",
    "exit_code",
    "lint_command",
    "lint_diagnostics",
    "register",
    "schema_command",
    "verdict_line",
]
