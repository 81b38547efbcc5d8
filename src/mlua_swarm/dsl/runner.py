"""Run a `.bp.lua` script and turn its returned table into Blueprint JSON.

The script runs in a fresh sandbox under a build budget, with `flow_dsl` and `bp_dsl` preloaded
and the part of Lua's standard library a build needs: `require` of Lua modules from the script's
folder and the include folders, `io` reads (relative paths from the script's folder) and
`os.getenv/time/date/clock`. The result is the Blueprint value before any `$agent_md` / `$file`
expansion, plus the authoring warnings `bp_dsl` reported. A Lua error, a runaway script or a
return value that is not a Blueprint table raises `DiagnosticError` pointing at the script's line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..diagnostics import Diagnostic, DiagnosticError, Level, Location
from ..textparse import read_input_text
from .sandbox import LuaAborted, LuaLimits, LuaSandbox, LuaScriptError, ModuleFinder

BUILD_LIMITS = LuaLimits(instructions=500_000_000, wall_secs=30.0, memory_bytes=256 * 1024 * 1024)
"""A build script gets generous budgets; they only exist to stop a runaway script."""

_STAGE = "dsl"
_RETURN = re.compile(r"^return\b")
_MODULE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*(\.[A-Za-z0-9_][A-Za-z0-9_-]*)*$")
INCLUDES_ENV = "MSE_BLUEPRINT_INCLUDES"
_BLOCKED = {
    name: f"{name} is not available in a .bp.lua build; require a Lua module next to the script, "
    "or read a file with io.open"
    for name in ("dofile", "loadfile")
}


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


def module_dirs(base_dir: Path, includes: Sequence[str | Path] = ()) -> list[Path]:
    """Where `require` looks for a script's modules: its folder, `MSE_BLUEPRINT_INCLUDES`, `includes`."""
    dirs = [base_dir]
    dirs += [Path(entry) for entry in os.environ.get(INCLUDES_ENV, "").split(os.pathsep) if entry]
    dirs += [Path(entry) for entry in includes]
    return list(dict.fromkeys(dirs))


def module_finder(dirs: Sequence[Path]) -> ModuleFinder:
    """`require "a.b"` finds `a/b.lua`, then `a/b/init.lua`, in the first of `dirs` holding one."""

    def find(name: object) -> tuple[str | None, str]:
        if not isinstance(name, str) or not _MODULE_NAME.match(name):
            return None, "a module name is dot-separated words of letters, digits, '_' and '-'"
        stem = name.replace(".", "/")
        for folder in dirs:
            for candidate in (folder / f"{stem}.lua", folder / stem / "init.lua"):
                if candidate.is_file():
                    try:
                        return candidate.read_text(encoding="utf-8"), f"@{candidate}"
                    except (OSError, UnicodeDecodeError) as exc:
                        return None, f"cannot read {candidate}: {exc}"
        return None, f"no {stem}.lua or {stem}/init.lua in " + ", ".join(str(d) for d in dirs)

    return find


def build_bp_lua(path: Path, *, includes: Sequence[str | Path] = ()) -> BuildResult:
    """Run the `.bp.lua` file at `path` and return the Blueprint value it builds.

    `includes` are further folders for `require`, after the script's own folder and
    `MSE_BLUEPRINT_INCLUDES`.
    """
    source = read_input_text(path)
    return build_bp_lua_source(source, str(path), includes=includes)


def build_bp_lua_source(
    source: str, file: str, limits: LuaLimits = BUILD_LIMITS, *, includes: Sequence[str | Path] = ()
) -> BuildResult:
    """Run DSL `source`; `file` names it in messages and diagnostics, and its folder is the script's."""
    name = Path(file).name
    base_dir = Path(file).resolve().parent
    warnings: list[Diagnostic] = []

    def warn(code: str, message: str, line: int | None) -> None:
        warnings.append(Diagnostic(code, message, Level.WARN, Location(file=file, line=line), stage=_STAGE))

    try:
        sandbox = LuaSandbox()
        run = sandbox.run(
            source,
            f"={name}",
            modules=dsl_modules(),
            warn=warn,
            limits=limits,
            find_module=module_finder(module_dirs(base_dir, includes)),
            extras=_build_libraries(sandbox, base_dir),
            blocked=_BLOCKED,
        )
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


def _build_libraries(sandbox: LuaSandbox, base_dir: Path) -> dict[str, Any]:
    """The `io` and `os` tables of a build (see `bp_host.lua`), made in the sandbox's runtime."""

    def resolve(path: object) -> object:
        return os.path.join(base_dir, path) if isinstance(path, str) else path

    libraries = sandbox.runtime.execute(_bp_host_source(), resolve)
    return {"io": libraries["io"], "os": libraries["os"]}


@cache
def _bp_host_source() -> str:
    return resources.files(__package__).joinpath("bp_host.lua").read_text(encoding="utf-8")


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


__all__ = [
    "BUILD_LIMITS",
    "BuildResult",
    "build_bp_lua",
    "build_bp_lua_source",
    "dsl_modules",
    "module_dirs",
    "module_finder",
]
