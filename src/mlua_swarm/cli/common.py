"""Helpers shared by the `mse` sub-commands: reading JSON arguments and reporting diagnostics.

Importing this module stays cheap (the compiler is imported when a helper needs it), so a
command's `--help` does not pay for it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..diagnostics import Diagnostic, DiagnosticError, Location

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_CANCELLED = 130


def read_json_arg(value: str, option: str) -> Any:
    """A JSON literal, or `@path` to read it from a file; raises DiagnosticError on bad input."""
    source, text = option, value
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text()
        except OSError as exc:
            raise DiagnosticError(
                [
                    Diagnostic(
                        "invalid-argument",
                        f"cannot read {path}: {exc.strerror}",
                        location=Location(file=str(path)),
                        hint=f"{option} @FILE needs a readable JSON file",
                    )
                ]
            ) from None
        source = str(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DiagnosticError(
            [
                Diagnostic(
                    "invalid-json",
                    f"{option} is not valid JSON: {exc.msg}",
                    location=Location(file=source, line=exc.lineno),
                    hint='quote strings with double quotes, e.g. --init \'{"topic": "x"}\' or --init @ctx.json',
                )
            ]
        ) from None


def fn_registry(extra: Mapping[str, str], base_dir: Path, source: str | None = None) -> dict[str, Callable[..., Any]]:
    """The function ids `rust_fn` agents may name (see `blueprint.compiler.fn_registry`)."""
    from ..blueprint.compiler import fn_registry as registry

    return registry(extra, base_dir, source)


def fn_options(options: Sequence[str], source: str | None = None) -> dict[str, str]:
    """`--fn ID=module:attr` options as `{id: target}`; a malformed one is an `invalid-option` diagnostic."""
    from ..blueprint.compiler import fn_option_diagnostic
    from ..worker.pyfn import parse_fn_option

    try:
        return dict(parse_fn_option(option) for option in options)
    except ValueError as exc:
        raise DiagnosticError([fn_option_diagnostic(exc, source)]) from None


def report_diagnostics(diagnostics: list[Diagnostic], *, as_json: bool) -> None:
    """Diagnostics to stderr (readable), and with --json also as one document on stdout."""
    for diagnostic in diagnostics:
        print(diagnostic.render(), file=sys.stderr)
    if as_json:
        print(json.dumps({"status": "invalid", "diagnostics": [d.to_json() for d in diagnostics]}))


__all__ = [
    "EXIT_CANCELLED",
    "EXIT_FAILED",
    "EXIT_INVALID",
    "EXIT_OK",
    "fn_options",
    "fn_registry",
    "read_json_arg",
    "report_diagnostics",
]
