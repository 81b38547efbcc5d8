"""Helpers shared by the `mse` sub-commands: reading JSON arguments and reporting diagnostics.

Importing this module stays cheap (the compiler is imported when a helper needs it), so a
command's `--help` does not pay for it.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..diagnostics import Diagnostic, DiagnosticError, Location
from ..termtext import terminal_text

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_CANCELLED = 130


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C a command has turned into a message: what it left undone, and how to find it.
    `mse` prints it and exits 130, as for any Ctrl-C it was not otherwise handling."""


def freeze_heap() -> None:
    """Put every object alive now out of the garbage collector's reach, for a command about to run
    flows for a while: its imports (and whatever it compiled or opened) stay for the process's life,
    so a full collection need not scan those tens of thousands of objects again and again."""
    gc.freeze()


def read_json_arg(value: str, option: str) -> Any:
    """A JSON literal, or `@path` to read it from a file; raises DiagnosticError on bad input."""
    source, text = option, value
    if value.startswith("@"):
        from ..textparse import read_input_text

        path = Path(value[1:])
        try:
            text = read_input_text(path)
        except DiagnosticError as exc:
            hint = f"{option} @FILE needs a readable UTF-8 JSON file"
            raise DiagnosticError([replace(d, hint=f"{hint}; {d.hint}") for d in exc.diagnostics]) from None
        source = str(path)
    from ..textparse import NUMBER_HINT, NonFiniteNumber, loads_finite

    try:
        return loads_finite(text)
    except NonFiniteNumber as exc:
        message = f"{option}: {exc}; JSON data has finite numbers only"
        diagnostic = Diagnostic("invalid-number", message, location=Location(file=source), hint=NUMBER_HINT)
        raise DiagnosticError([diagnostic]) from None
    except json.JSONDecodeError as exc:
        raise _json_arg_error(
            f"{option} is not valid JSON: {exc.msg}",
            Location(file=source, line=exc.lineno),
            'quote strings with double quotes, e.g. --init \'{"topic": "x"}\' or --init @ctx.json',
        ) from None
    except RecursionError:
        raise _json_arg_error(f"{option} is nested too deeply", Location(file=source), "flatten the value") from None
    except ValueError as exc:
        raise _json_arg_error(
            f"{option}: a number is out of range: {exc}", Location(file=source), "write it as a string"
        ) from None


def read_object_arg(value: str, option: str) -> dict[str, Any]:
    """`read_json_arg` for options that must hold a JSON object (such as `--init`)."""
    parsed = read_json_arg(value, option)
    if not isinstance(parsed, dict):
        from ..flow.paths import json_type_name

        raise DiagnosticError(
            [
                Diagnostic(
                    "invalid-argument",
                    f"{option} must be a JSON object, got {json_type_name(parsed)}",
                    location=Location(file=value[1:] if value.startswith("@") else option),
                    hint=f'e.g. {option} \'{{"topic": "x"}}\'',
                )
            ]
        )
    return parsed


def _json_arg_error(message: str, location: Location, hint: str) -> DiagnosticError:
    return DiagnosticError([Diagnostic("invalid-json", message, location=location, hint=hint)])


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
        print(terminal_text(diagnostic.render()), file=sys.stderr)
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
    "read_object_arg",
    "report_diagnostics",
]
