"""Run a `.bp.lua` script and turn its returned table into Blueprint JSON.

The script runs in a fresh sandbox with `flow_dsl` and `bp_dsl` preloaded (no filesystem access)
under a build budget. The result is the Blueprint value before any `$agent_md` / `$file`
expansion, plus the authoring warnings `bp_dsl` reported. A Lua error, a runaway script or a
return value that is not a Blueprint table raises `DiagnosticError` pointing at the script's line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..blueprint.textparse import read_input_text
from ..diagnostics import Diagnostic, DiagnosticError, Level, Location
from .sandbox import LuaAborted, LuaLimits, LuaSandbox, LuaScriptError

BUILD_LIMITS = LuaLimits(instructions=500_000_000, wall_secs=30.0, memory_bytes=256 * 1024 * 1024)
"""A build script gets generous budgets; they only exist to stop a runaway script."""

_STAGE = "dsl"
_RETURN = re.compile(r"^return\b")


@dataclass(slots=True)
class BuildResult:
    """The Blueprint JSON a script built (refs not yet expanded) and its authoring warnings."""

    value: dict[str, Any]
    warnings: list[Diagnostic] = field(default_factory=list)


@cache
def dsl_modules() -> dict[str, str]:
    """The preloaded modules' Lua sources, by `require` name."""
    package = resources.files(__package__)
    return {name: package.joinpath(f"{name}.lua").read_text(encoding="utf-8") for name in ("flow_dsl", "bp_dsl")}


def build_bp_lua(path: Path) -> BuildResult:
    """Run the `.bp.lua` file at `path` and return the Blueprint value it builds."""
    source = read_input_text(path)
    return build_bp_lua_source(source, str(path))


def build_bp_lua_source(source: str, file: str, limits: LuaLimits = BUILD_LIMITS) -> BuildResult:
    """Run DSL `source`; `file` names it in messages and diagnostics."""
    name = Path(file).name
    warnings: list[Diagnostic] = []

    def warn(code: str, message: str, line: int | None) -> None:
        warnings.append(Diagnostic(code, message, Level.WARN, Location(file=file, line=line), stage=_STAGE))

    try:
        run = LuaSandbox().run(source, f"={name}", modules=dsl_modules(), warn=warn, limits=limits)
    except LuaScriptError as exc:
        raise DiagnosticError(
            [
                Diagnostic(
                    "dsl-error",
                    _strip_position(exc.message, name),
                    location=Location(file=file, line=exc.line),
                    hint="the script raised while building the Blueprint; fix the Lua at that line",
                    stage=_STAGE,
                )
            ]
        ) from exc
    except LuaAborted as exc:
        raise DiagnosticError(
            [
                Diagnostic(
                    "dsl-error",
                    f"the script was stopped: {exc}",
                    location=Location(file=file),
                    hint="a build script should finish quickly; look for an endless loop",
                    stage=_STAGE,
                )
            ]
        ) from exc
    if not isinstance(run.value, dict):
        raise DiagnosticError([_not_a_table(run.value, source, file)])
    return BuildResult(run.value, warnings)


def _strip_position(message: str, name: str) -> str:
    """Drop Lua's `name:line: ` prefix; the diagnostic's location carries it."""
    prefix = re.match(rf"^{re.escape(name)}:\d+: ", message)
    return message[prefix.end() :] if prefix else message


def _not_a_table(value: Any, source: str, file: str) -> Diagnostic:
    if value is None:
        what = "nothing"
    elif isinstance(value, list):
        what = "an array" if value else "an empty table (which is the JSON array [])"
    else:
        what = f"a {type(value).__name__} ({value!r:.60})"
    return Diagnostic(
        "dsl-not-a-table",
        f"the script returned {what}; a .bp.lua script must return the Blueprint table",
        location=Location(file=file, line=_last_return_line(source)),
        hint='end the script with `return B.bp { id = "...", flow = ..., agents = { ... } }`',
        stage=_STAGE,
    )


def _last_return_line(source: str) -> int | None:
    """The line of the main chunk's final `return` (the last unindented one), if any."""
    found = None
    for number, line in enumerate(source.splitlines(), start=1):
        if _RETURN.match(line):
            found = number
    return found


__all__ = ["BUILD_LIMITS", "BuildResult", "build_bp_lua", "build_bp_lua_source", "dsl_modules"]
