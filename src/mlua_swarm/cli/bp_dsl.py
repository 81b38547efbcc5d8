"""`mse bp build` and `mse bp new`: the Lua DSL's sub-commands of `mse bp`.

`build` runs a `.bp.lua` script, prints its authoring warnings to stderr, lints the result (as
`mse bp lint` would) and writes the Blueprint JSON, references unexpanded, to stdout or `-o OUT`.
An unresolved `$file` / `$agent_md` reference only skips the lint (a warning) unless
`--strict-embed` is given. `new` writes `NAME.bp.lua` from one of the shipped templates.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from ..blueprint.compiler import compile_blueprint
from ..diagnostics import Diagnostic, DiagnosticError, Level
from ..dsl.runner import build_bp_lua
from .bp import verdict_line
from .common import fn_options, fn_registry, report_diagnostics

TEMPLATES = ("pipeline", "single", "verdict", "fanout")
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
_REF_CODES = frozenset({"ref-not-found"})


def register_bp(bp_subparsers: Any) -> None:
    """Add `build` and `new` to the `mse bp` group."""
    build = bp_subparsers.add_parser("build", help="run a .bp.lua script and print the Blueprint JSON")
    build.add_argument("file", type=Path, help="the .bp.lua script")
    build.add_argument("-o", "--output", type=Path, help="write the JSON here instead of stdout")
    build.add_argument(
        "--strict-embed", action="store_true", help="fail when a $file / $agent_md reference does not resolve"
    )
    build.add_argument(
        "--include", action="append", default=[], type=Path, metavar="DIR", help="a folder for $file / $agent_md"
    )
    build.add_argument(
        "--fn", action="append", default=[], metavar="ID=MODULE:ATTR", help="register a function id for rust_fn agents"
    )
    build.set_defaults(handler=build_command)

    new = bp_subparsers.add_parser("new", help="write NAME.bp.lua from a template")
    new.add_argument("template", choices=TEMPLATES, help="which scaffold to start from")
    new.add_argument("name", help="the Blueprint id; the file is NAME.bp.lua")
    new.add_argument("--force", action="store_true", help="overwrite an existing file")
    new.set_defaults(handler=new_command)


def build_command(args: argparse.Namespace) -> int:
    try:
        built = build_bp_lua(args.file)
    except DiagnosticError as exc:
        report_diagnostics(exc.diagnostics, as_json=False)
        return EXIT_INVALID
    report_diagnostics(built.warnings, as_json=False)
    findings = _lint(built.value, args)
    report_diagnostics(findings, as_json=False)
    print(verdict_line("compile lint", findings, built.value), file=sys.stderr)
    if any(d.level is Level.ERROR for d in findings):
        return EXIT_INVALID
    text = json.dumps(built.value, indent=2, ensure_ascii=False) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _lint(value: dict[str, Any], args: argparse.Namespace) -> list[Diagnostic]:
    """Compile the built value; unresolved references downgrade to a warning without --strict-embed."""
    base_dir = args.file.resolve().parent
    try:
        fns = fn_registry(fn_options(args.fn, str(args.file)), base_dir, str(args.file))
    except DiagnosticError as exc:
        return exc.diagnostics
    try:
        compiled = compile_blueprint(value, base_dir=base_dir, fns=fns, includes=args.include, source=str(args.file))
    except DiagnosticError as exc:
        errors = [d for d in exc.diagnostics if d.level is Level.ERROR]
        if args.strict_embed or not errors or any(d.code not in _REF_CODES for d in errors):
            return exc.diagnostics
        return [_as_warning(d) for d in exc.diagnostics]
    return compiled.diagnostics


def _as_warning(diagnostic: Diagnostic) -> Diagnostic:
    return Diagnostic(
        diagnostic.code,
        f"{diagnostic.message} (lint skipped; the JSON keeps the reference)",
        Level.WARN,
        diagnostic.location,
        "pass --include DIR for the folder holding it, or --strict-embed to make this an error",
        diagnostic.stage,
    )


def template_text(template: str, name: str) -> str:
    """The scaffold `template` with its Blueprint id set to `name`."""
    source = resources.files("mlua_swarm").joinpath(f"templates/{template}.bp.lua").read_text(encoding="utf-8")
    return source.replace("{{name}}", name)


def new_command(args: argparse.Namespace) -> int:
    raw = str(args.name)
    stem = raw[: -len(".bp.lua")] if raw.endswith(".bp.lua") else raw
    path = Path(f"{stem}.bp.lua")
    blueprint_id = path.name[: -len(".bp.lua")]
    if not blueprint_id or any(ch in blueprint_id for ch in '"\\[]\n'):
        print(f"error: {raw!r} is not a usable Blueprint name", file=sys.stderr)
        return EXIT_INVALID
    if path.exists() and not args.force:
        print(f"error: {path} exists; pass --force to overwrite it", file=sys.stderr)
        return EXIT_FAILED
    try:
        path.write_text(template_text(args.template, blueprint_id), encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {path}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {path} (template {args.template}); build it with: mse bp build {path}", file=sys.stderr)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`python -m mlua_swarm.cli.bp_dsl build|new ...`, for use before `mse bp` lists this module."""
    parser = argparse.ArgumentParser(prog="mse bp")
    register_bp(parser.add_subparsers(dest="bp_command", metavar="BP_COMMAND", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["TEMPLATES", "build_command", "main", "new_command", "register_bp", "template_text"]
