"""`mse bp build` and `mse bp new`: the Lua DSL's sub-commands of `mse bp`.

`build` runs a `.bp.lua` script, prints its authoring warnings to stderr, lints the result (as
`mse bp lint` would) and writes the Blueprint JSON, references unexpanded, to stdout or `-o OUT`.
An unresolved `$file` / `$agent_md` reference only skips the lint (a warning) unless
`--strict-embed` is given. `new` renders one of the shipped templates (every `*.bp.lua` file in
`mlua_swarm/templates`, a Jinja text) to stdout or `-o OUT`, with upstream's flags.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..diagnostics import Diagnostic, DiagnosticError, Level, Location
from .bp import verdict_line

if TYPE_CHECKING:
    import jinja2
from .common import EXIT_INVALID, EXIT_OK, fn_options, fn_registry, report_diagnostics

TEMPLATE_SUFFIX = ".bp.lua"
DEFAULT_OPERATOR = "main-ai"
DEFAULT_BINDING = "claude"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_WORD = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_NAME_HINT = "use letters, digits, '-' and '_' (and '.' in a Blueprint id), e.g. review-notes"
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

    new = bp_subparsers.add_parser("new", help="print a .bp.lua scaffold from a template (or write it with -o)")
    new.add_argument("template", help=f"which scaffold: {', '.join(template_names())}")
    new.add_argument("name", help="the Blueprint id")
    new.add_argument("--stages", metavar="A,B", help="stage names, comma-separated (pipeline, verdict, fanout)")
    new.add_argument("--agent", help="the agent name (single)")
    new.add_argument(
        "--operator",
        help=f"make the agents operator agents of this operator seat (default {DEFAULT_OPERATOR} with --binding)",
    )
    new.add_argument("--binding", help=f"the ws_operator runner variant of operator agents (default {DEFAULT_BINDING})")
    new.add_argument(
        "-o", "--out", type=Path, help="write the script here instead of stdout (a folder: NAME.bp.lua in it)"
    )
    new.set_defaults(handler=new_command)


DATA_SUFFIXES = (".json", ".yaml", ".yml")


def build_command(args: argparse.Namespace) -> int:
    from ..dsl.runner import build_bp_lua  # Lua and the DSL: only when a script is built

    if args.file.suffix.lower() in DATA_SUFFIXES:
        not_a_script = Diagnostic(
            "unsupported-file",
            "bp build runs a .bp.lua script",
            location=Location(file=str(args.file)),
            hint="a JSON or YAML Blueprint needs no build: check it with `mse bp lint`, run it with `mse run`",
        )
        report_diagnostics([not_a_script], as_json=False)
        return EXIT_INVALID
    try:
        built = build_bp_lua(args.file, includes=args.include)
    except DiagnosticError as exc:
        report_diagnostics(exc.diagnostics, as_json=False)
        return EXIT_INVALID
    report_diagnostics(built.warnings, as_json=False)
    findings = lint_built(built.value, args.file, includes=args.include, strict_embed=args.strict_embed, fns=args.fn)
    report_diagnostics(findings, as_json=False)
    print(verdict_line("compile lint", findings, built.value), file=sys.stderr)
    if any(d.level is Level.ERROR for d in findings):
        return EXIT_INVALID
    text = json.dumps(built.value, indent=2, ensure_ascii=False) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    return EXIT_OK if write_output(args.output, text) else EXIT_INVALID


def write_output(path: Path, text: str) -> bool:
    """Write a command's result to its `-o` file; False (with a diagnostic on stderr) when it cannot."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        unwritable = Diagnostic(
            "output-unwritable",
            f"cannot write the output: {exc.strerror or exc}",
            location=Location(file=str(path)),
            hint="name a file in an existing folder you can write to (or leave -o out to print to stdout)",
        )
        report_diagnostics([unwritable], as_json=False)
        return False
    return True


def lint_built(
    value: dict[str, Any],
    file: Path,
    *,
    includes: Sequence[Path] = (),
    strict_embed: bool = False,
    fns: Sequence[str] = (),
) -> list[Diagnostic]:
    """Compile a built value as `bp build` lints it: an unresolved reference is only a warning
    (the JSON keeps it) unless `strict_embed`."""
    from ..blueprint.compiler import compile_blueprint

    base_dir = file.resolve().parent
    try:
        registry = fn_registry(fn_options(fns, str(file)), base_dir, str(file))
    except DiagnosticError as exc:
        return exc.diagnostics
    try:
        compiled = compile_blueprint(value, base_dir=base_dir, fns=registry, includes=includes, source=str(file))
    except DiagnosticError as exc:
        errors = [d for d in exc.diagnostics if d.level is Level.ERROR]
        if strict_embed or not errors or any(d.code not in _REF_CODES for d in errors):
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


def template_names() -> list[str]:
    """Every template: each `*.bp.lua` file shipped in `mlua_swarm/templates`."""
    folder = resources.files("mlua_swarm").joinpath("templates")
    return sorted(
        entry.name[: -len(TEMPLATE_SUFFIX)] for entry in folder.iterdir() if entry.name.endswith(TEMPLATE_SUFFIX)
    )


class TemplateError(ValueError):
    """The template or one of its parameters is unusable: the message says which and why, `code` and
    `hint` are the diagnostic's, `argument` names the parameter (as the command line spells it)."""

    def __init__(self, code: str, message: str, argument: str, hint: str) -> None:
        super().__init__(message)
        self.code = code
        self.argument = argument
        self.hint = hint

    def diagnostic(self) -> Diagnostic:
        return Diagnostic(self.code, str(self), location=Location("command line", self.argument), hint=self.hint)


def render_template(
    template: str,
    name: str,
    *,
    stages: Sequence[str] | None = None,
    agent: str | None = None,
    operator: str | None = None,
    binding: str | None = None,
) -> str:
    """The `.bp.lua` text of `template` for Blueprint `name` (upstream's `mse bp new` parameters).

    Agents are runnable inline Lua unless `operator` or `binding` is given, which makes them
    upstream-style operator agents (`ws_operator` runner) of that operator seat.
    """
    names = template_names()
    if template not in names:
        raise TemplateError(
            "template-unknown",
            f"unknown template '{template}': accepted = {' / '.join(names)}",
            "TEMPLATE",
            "pick one of the accepted templates; `mse bp new --help` says what each makes",
        )
    if not _NAME.match(name):
        raise TemplateError(
            "name-invalid",
            f"{name!r} is not a usable Blueprint id (letters, digits, '_', '-', '.')",
            "NAME",
            _NAME_HINT,
        )
    for label, value in (("stage", stages or ()), ("agent", [agent] if agent else ())):
        for word in value:
            if not _WORD.match(word):
                raise _bad_word(label, word)
    if operator is not None or binding is not None:
        operator = operator or DEFAULT_OPERATOR
        binding = binding or DEFAULT_BINDING
        for label, word in (("operator", operator), ("binding", binding)):
            if not _WORD.match(word):
                raise _bad_word(label, word)
    context = {
        "name": name,
        "stages": list(stages) if stages else None,
        "agent": agent,
        "operator": operator,
        "binding": binding,
    }
    return _templates().get_template(template + TEMPLATE_SUFFIX).render(context)


def _bad_word(label: str, word: str) -> TemplateError:
    option = "--stages" if label == "stage" else f"--{label}"
    return TemplateError(
        "name-invalid", f"{word!r} is not a usable {label} name (letters, digits, '_', '-')", option, _NAME_HINT
    )


@cache
def _templates() -> jinja2.Environment:
    import jinja2

    folder = resources.files("mlua_swarm").joinpath("templates")
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda file: folder.joinpath(file).read_text(encoding="utf-8")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # the output is Lua source, not HTML
    )


def parse_stages(raw: str | None) -> list[str] | None:
    """`--stages a,b` as a list; empty entries are dropped, and nothing left means the template's default."""
    if raw is None:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()] or None


def new_command(args: argparse.Namespace) -> int:
    try:
        text = render_template(
            args.template,
            args.name,
            stages=parse_stages(args.stages),
            agent=args.agent,
            operator=args.operator,
            binding=args.binding,
        )
    except TemplateError as exc:
        report_diagnostics([exc.diagnostic()], as_json=False)
        return EXIT_INVALID
    if args.out is None:
        sys.stdout.write(text)
        return EXIT_OK
    out: Path = args.out / f"{args.name}{TEMPLATE_SUFFIX}" if args.out.is_dir() else args.out
    if not write_output(out, text):
        return EXIT_INVALID
    print(f"mse bp new: wrote {out} ({len(text)} bytes)", file=sys.stderr)
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


__all__ = [
    "TemplateError",
    "build_command",
    "lint_built",
    "main",
    "new_command",
    "parse_stages",
    "register_bp",
    "render_template",
    "template_names",
]
