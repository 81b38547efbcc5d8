"""Reading Blueprint files (JSON, YAML, `.bp.lua`) and expanding `$file` / `$agent_md` references.

A reference is resolved against a cascade of folders, first hit wins: the Blueprint's own folder,
its `blueprint_ref_includes` (relative to that folder), the `MSE_BLUEPRINT_INCLUDES` path list,
folders the caller passes (`--include`, server configuration), and last the bundled agents folder
(`mlua_swarm/samples/agents`). Reference paths must be relative and may not contain `..`, so a
Blueprint can only read files under those folders.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..diagnostics import Diagnostic, DiagnosticError, Location
from ..paths import PathRefused, name_problem, under_root
from ..samples import bundled_agents_dir
from ..textparse import load_error, parse_json_text, read_input_text
from .agent_md import AgentMdError, parse_agent_md

INCLUDES_ENV = "MSE_BLUEPRINT_INCLUDES"
JSON_SUFFIXES = (".json",)
YAML_SUFFIXES = (".yaml", ".yml")
LUA_SUFFIXES = (".lua",)
MAX_DEPTH = 200
"""How deeply arrays and objects may nest in a Blueprint; deeper documents are refused before any walk."""


def load_blueprint_source(
    path: str | Path, *, warnings: list[Diagnostic] | None = None, includes: Sequence[str | Path] = ()
) -> tuple[Any, Path]:
    """Read a Blueprint file into its raw JSON value (references not expanded) and its folder.

    `.json`, `.yaml`/`.yml` and `.bp.lua` are accepted; authoring warnings of a `.bp.lua` build are
    appended to `warnings` when given, and its `require` also searches `includes`.
    """
    path = Path(path)
    file = str(path)
    base_dir = path.resolve().parent
    if path.name.endswith(LUA_SUFFIXES):
        from ..dsl.runner import build_bp_lua

        built = build_bp_lua(path, includes=includes)
        if warnings is not None:
            warnings.extend(built.warnings)
        return built.value, base_dir
    if not path.name.endswith(JSON_SUFFIXES + YAML_SUFFIXES):
        raise load_error(
            "unsupported-file",
            f"cannot tell the format of {path.name}",
            "name the file *.json, *.yaml, *.yml or *.bp.lua",
            file,
        )
    text = read_input_text(path, file)
    if path.name.endswith(JSON_SUFFIXES):
        return parse_json_text(text, file), base_dir
    from ..yamltext import parse_yaml_text  # the YAML parser loads only for YAML files

    return parse_yaml_text(text, file), base_dir


def declared_includes(raw: Any) -> list[tuple[int, str]]:
    """The Blueprint's own `blueprint_ref_includes` entries, with their index."""
    declared = raw.get("blueprint_ref_includes") if isinstance(raw, Mapping) else None
    if not isinstance(declared, list):
        return []
    return [(i, entry) for i, entry in enumerate(declared) if isinstance(entry, str)]


def reference_dirs(raw: Any, base_dir: Path, includes: Sequence[str | Path] = ()) -> list[Path]:
    """The folders references are resolved against, in cascade order, without duplicates.

    The Blueprint's own include entries obey the same hygiene as references (relative, no `..`), so
    a document cannot widen what it may read; the environment and the caller may name any folder.
    """
    dirs = [base_dir]
    dirs += [folder for _, entry in declared_includes(raw) if (folder := _declared_folder(base_dir, entry)) is not None]
    dirs += [Path(entry) for entry in os.environ.get(INCLUDES_ENV, "").split(os.pathsep) if entry]
    dirs += [Path(entry) for entry in includes]
    dirs.append(bundled_agents_dir())
    unique: list[Path] = []
    for entry in dirs:
        if entry not in unique:
            unique.append(entry)
    return unique


def _declared_folder(base_dir: Path, entry: str) -> Path | None:
    """The folder a `blueprint_ref_includes` entry names, or None when it would leave `base_dir`
    (`..`, an absolute path, or a symbolic link leading out)."""
    try:
        return under_root(base_dir, entry)
    except PathRefused:
        return None


def check_ref_path(ref: str) -> str | None:
    """Why a reference path is refused (absolute, empty, NUL, or with `..`), or None when it is fine."""
    return name_problem(ref)


class RefExpander:
    """Replaces `{"$file": p}` with the file's text and `{"$agent_md": p, ...}` with an agent definition."""

    def __init__(self, dirs: Sequence[Path], default_kind: str) -> None:
        self.dirs = list(dirs)
        self.default_kind = default_kind
        self.diagnostics: list[Diagnostic] = []

    def expand(self, value: Any, json_path: str = "$") -> Any:
        if isinstance(value, list):
            return [self.expand(item, f"{json_path}[{i}]") for i, item in enumerate(value)]
        if not isinstance(value, Mapping):
            return value
        if "$file" in value and len(value) == 1:
            return self._file_text(value["$file"], f"{json_path}.$file")
        if "$agent_md" in value:
            return self._agent(value, json_path)
        return {key: self.expand(item, _child(json_path, key)) for key, item in value.items()}

    def _agent(self, value: Mapping[str, Any], json_path: str) -> Any:
        where = f"{json_path}.$agent_md"
        text = self._file_text(value["$agent_md"], where)
        if text is None:
            return dict(value)
        siblings = {k: self.expand(v, _child(json_path, k)) for k, v in value.items() if k != "$agent_md"}
        kind = siblings.get("kind", self.default_kind)
        try:
            agent = parse_agent_md(text, kind=kind)
        except AgentMdError as exc:
            self._report("invalid-agent-md", f"{value['$agent_md']}: {exc}", exc.hint, where)
            return dict(value)
        agent.update(siblings)
        return agent

    def _file_text(self, ref: Any, json_path: str) -> str | None:
        if not isinstance(ref, str):
            self._report("ref-path-rejected", "a reference must be a relative path string", None, json_path)
            return None
        problem = check_ref_path(ref)
        if problem is not None:
            self.refuse_path(f"reference {ref!r} refused: {problem}", json_path)
            return None
        for folder in self.dirs:
            if not (folder / ref).is_file():
                continue
            try:
                candidate = under_root(folder, ref)
            except PathRefused:
                self._report(
                    "ref-path-rejected",
                    f"reference {ref!r} leaves {folder} through a symbolic link",
                    "point the reference at a file inside the include folder",
                    json_path,
                )
                return None
            try:
                return read_input_text(candidate)
            except DiagnosticError as exc:
                first = exc.diagnostics[0]
                self._report(first.code, f"{candidate}: {first.message}", first.hint, json_path)
                return None
        searched = ", ".join(str(d) for d in self.dirs)
        self._report(
            "ref-not-found",
            f"reference {ref!r} not found (searched: {searched})",
            f"create the file, add its folder to blueprint_ref_includes, or set {INCLUDES_ENV} / --include",
            json_path,
        )
        return None

    def refuse_path(self, message: str, json_path: str) -> None:
        hint = f"use a path relative to the Blueprint's folder; name outside folders with {INCLUDES_ENV} or --include"
        self._report("ref-path-rejected", message, hint, json_path)

    def _report(self, code: str, message: str, hint: str | None, json_path: str) -> None:
        self.diagnostics.append(
            Diagnostic(code, message, location=Location(json_path=json_path), hint=hint, stage="ref_resolve")
        )


def _child(json_path: str, key: str) -> str:
    if key.isidentifier():
        return f"{json_path}.{key}"
    return f"{json_path}[{json.dumps(key)}]"


def has_refs(value: Any) -> bool:
    """Whether a raw value still holds a `$file` or `$agent_md` reference anywhere."""
    if isinstance(value, list):
        return any(has_refs(item) for item in value)
    if isinstance(value, Mapping):
        if ("$file" in value and len(value) == 1) or "$agent_md" in value:
            return True
        return any(has_refs(item) for item in value.values())
    return False


def too_deep_at(value: Any, limit: int = MAX_DEPTH) -> str | None:
    """The JSON path of the first value nested deeper than `limit`, or None (checked without recursion)."""
    stack: list[tuple[Any, str, int]] = [(value, "$", 0)]
    while stack:
        current, json_path, depth = stack.pop()
        if depth > limit:
            return json_path
        if isinstance(current, Mapping):
            stack.extend((item, _child(json_path, str(key)), depth + 1) for key, item in current.items())
        elif isinstance(current, list):
            stack.extend((item, f"{json_path}[{i}]", depth + 1) for i, item in enumerate(current))
    return None


def expand_refs(raw: Any, base_dir: str | Path, *, includes: Sequence[str | Path] = ()) -> Any:
    """A copy of `raw` with every reference expanded; unresolved or refused ones raise DiagnosticError."""
    deep = too_deep_at(raw)
    if deep is not None:
        raise DiagnosticError(
            [
                Diagnostic(
                    "document-too-deep",
                    f"values nest more than {MAX_DEPTH} levels deep",
                    location=Location(json_path=deep),
                    hint="flatten the value there",
                )
            ]
        )
    base = Path(base_dir)
    default_kind = raw.get("default_agent_kind", "operator") if isinstance(raw, Mapping) else "operator"
    expander = RefExpander(reference_dirs(raw, base, includes), default_kind)
    for index, entry in declared_includes(raw):
        problem = check_ref_path(entry)
        if problem is None and _declared_folder(base, entry) is None:
            problem = f"it leads out of {base.resolve()} through a symbolic link"
        if problem is not None:
            expander.refuse_path(f"include folder {entry!r} refused: {problem}", f"$.blueprint_ref_includes[{index}]")
    expanded = expander.expand(raw)
    if expander.diagnostics:
        raise DiagnosticError(expander.diagnostics)
    return expanded


__all__ = [
    "INCLUDES_ENV",
    "MAX_DEPTH",
    "RefExpander",
    "check_ref_path",
    "declared_includes",
    "expand_refs",
    "has_refs",
    "load_blueprint_source",
    "reference_dirs",
    "too_deep_at",
]
