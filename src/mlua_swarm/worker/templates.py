"""`SubprocessDef` templates: named command lines a Blueprint's agents run through `runner.template`.

A template is validated once, at compile time (closed placeholder set, pointer syntax, `output` vs
`stream_mode`), and rendered per attempt by substituting `{placeholder}` tokens in a single pass:
substituted text is never scanned again, and brace text that is not a lowercase token (JSON, say)
stays literal. In plain mode a declared `output` turns the child's stdout into the step value
(`result_ptr`), its success (`ok_from`) and its stats (usage, model, turns).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .kinds import InvalidAgentSpec
from .streams import StreamMode

PLACEHOLDERS = frozenset({"system", "system_file", "prompt", "model", "tools_csv", "work_dir", "task_id", "attempt"})
"""The closed set of names a template may reference as `{name}`."""
_TOKEN = re.compile(r"\{([a-z_]+)\}")
_DEF_KEYS = frozenset({"name", "argv", "stdin", "env", "cwd", "output", "stream_mode"})
_OUTPUT_KEYS = frozenset({"format", "result_ptr", "ok_from", "stats"})
_STATS_KEYS = frozenset({"usage_ptr", "model_ptr", "num_turns_ptr"})
_OVERRIDE_KEYS = frozenset({"model", "tools", "cwd"})
MISSING: Any = object()
"""What `resolve_pointer` returns for a pointer that does not resolve."""


class MissingPlaceholder(LookupError):
    """A template references a placeholder that has no value for this attempt."""

    def __init__(self, name: str, hint: str) -> None:
        super().__init__(f"template placeholder {{{name}}} has no value: {hint}")
        self.name = name


def placeholders_in(text: str) -> set[str]:
    """Every `{name}` token in `text` (lowercase letters and `_` only)."""
    return set(_TOKEN.findall(text))


def substitute(text: str, values: Mapping[str, str], missing_hints: Mapping[str, str] | None = None) -> str:
    """Replace every placeholder token in one pass; a token with no value raises `MissingPlaceholder`."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        value = values.get(name)
        if value is None:
            if name not in PLACEHOLDERS:
                return match.group(0)
            raise MissingPlaceholder(name, (missing_hints or {}).get(name, "nothing provides it"))
        return value

    return _TOKEN.sub(replace, text)


def resolve_pointer(doc: Any, pointer: str) -> Any:
    """The value at an RFC 6901 JSON pointer, or `MISSING` when it does not resolve."""
    if pointer == "":
        return doc
    current = doc
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict):
            if token not in current:
                return MISSING
            current = current[token]
        elif isinstance(current, list):
            if not token.isdigit() or (token != "0" and token.startswith("0")) or int(token) >= len(current):
                return MISSING
            current = current[int(token)]
        else:
            return MISSING
    return current


@dataclass(frozen=True, slots=True)
class OutputDecl:
    """How a plain-mode child's stdout becomes the value, its success and its stats."""

    format: str | None = None
    result_ptr: str | None = None
    ok_from: str | None = None
    usage_ptr: str | None = None
    model_ptr: str | None = None
    num_turns_ptr: str | None = None


@dataclass(frozen=True, slots=True)
class SubprocessDef:
    """One validated entry of `Blueprint.subprocesses`."""

    name: str
    argv: tuple[str, ...]
    stdin: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    output: OutputDecl | None = None
    stream_mode: StreamMode | None = None

    @classmethod
    def from_json(cls, obj: Any) -> SubprocessDef:
        """Validate a template; raises `InvalidAgentSpec` naming the template and the fix."""
        if not isinstance(obj, Mapping):
            raise InvalidAgentSpec("a subprocesses[] entry must be an object", 'write {"name": ..., "argv": [...]}')
        name = obj.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidAgentSpec("a subprocesses[] entry needs a non-empty string 'name'", None)
        where = f"subprocess template '{name}'"
        _no_unknown_keys(obj, _DEF_KEYS, where)
        argv = obj.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise InvalidAgentSpec(f"{where}: 'argv' must be a non-empty list of strings", 'e.g. "argv": ["cat"]')
        stdin = _opt_str(obj, "stdin", where)
        cwd = _opt_str(obj, "cwd", where)
        env = obj.get("env") or {}
        if not isinstance(env, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise InvalidAgentSpec(f"{where}: 'env' must map names to strings", 'e.g. "env": {"MODEL": "{model}"}')
        stream_mode = parse_stream_mode(obj.get("stream_mode"), where)
        output = _parse_output(obj.get("output"), where)
        if output is not None and stream_mode is not None:
            raise InvalidAgentSpec(
                f"{where}: 'output' and 'stream_mode' cannot both be set",
                "a streaming child reports its value in a final event; drop one of the two",
            )
        texts = [*argv, *(t for t in (stdin, cwd) if t is not None), *env.values()]
        unknown = sorted(set().union(*(placeholders_in(t) for t in texts)) - PLACEHOLDERS)
        if unknown:
            close = difflib.get_close_matches(unknown[0], PLACEHOLDERS, n=1)
            guess = f"did you mean {{{close[0]}}}? " if close else ""
            raise InvalidAgentSpec(
                f"{where}: unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}",
                f"{guess}placeholders are {', '.join(sorted('{' + p + '}' for p in PLACEHOLDERS))}",
            )
        return cls(name, tuple(argv), stdin, dict(env), cwd, output, stream_mode)

    def referenced(self) -> set[str]:
        """The placeholders this template uses anywhere."""
        texts: Iterable[str] = (*self.argv, self.stdin or "", self.cwd or "", *self.env.values())
        return set().union(*(placeholders_in(t) for t in texts))


@dataclass(frozen=True, slots=True)
class BoundTemplate:
    """A template as one agent uses it: its model, tools and cwd resolved, and its system prompt."""

    template: SubprocessDef
    model: str | None
    tools_csv: str
    cwd: str | None
    system_prompt: str


@dataclass(frozen=True, slots=True)
class RenderedCommand:
    argv: list[str]
    stdin: str | None
    env: dict[str, str]
    cwd: str | None


def bind_template(runner: Mapping[str, Any], blueprint: Mapping[str, Any], profile: Mapping[str, Any]) -> BoundTemplate:
    """Resolve `runner: {backend: subprocess, template, overrides}` against `Blueprint.subprocesses`."""
    name = runner.get("template")
    if not isinstance(name, str) or not name:
        raise InvalidAgentSpec(
            "runner 'subprocess' needs a 'template' name",
            'e.g. "runner": {"backend": "subprocess", "template": "my-cli"}',
        )
    _no_unknown_keys(runner, frozenset({"backend", "template", "overrides"}), f"runner of template '{name}'")
    entries = blueprint.get("subprocesses") or []
    if not isinstance(entries, list):
        raise InvalidAgentSpec("'subprocesses' must be a list of templates", None)
    found = [e for e in entries if isinstance(e, Mapping) and e.get("name") == name]
    if not found:
        known = ", ".join(str(e.get("name")) for e in entries if isinstance(e, Mapping)) or "none"
        raise InvalidAgentSpec(
            f"subprocess template '{name}' is not declared (known: {known})",
            f'add {{"name": "{name}", "argv": [...]}} to the Blueprint\'s "subprocesses"',
        )
    template = SubprocessDef.from_json(found[0])
    overrides = runner.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise InvalidAgentSpec(f"runner overrides of template '{name}' must be an object", None)
    _no_unknown_keys(overrides, _OVERRIDE_KEYS, f"runner overrides of template '{name}'")
    model = _first_str(overrides.get("model"), profile.get("model"))
    tools = overrides.get("tools") or profile.get("tools") or []
    if isinstance(tools, str):
        tools = [t.strip() for t in tools.split(",") if t.strip()]
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        raise InvalidAgentSpec(f"tools for template '{name}' must be a list of strings", None)
    cwd = _first_str(overrides.get("cwd"), template.cwd)
    if cwd is not None and placeholders_in(cwd) - PLACEHOLDERS:
        raise InvalidAgentSpec(f"overrides.cwd of template '{name}' has an unknown placeholder", None)
    system = profile.get("system_prompt") or ""
    if not isinstance(system, str):
        raise InvalidAgentSpec("profile.system_prompt must be a string", None)
    return BoundTemplate(template, model, ",".join(tools), cwd, system)


def render_command(bound: BoundTemplate, values: Mapping[str, str]) -> RenderedCommand:
    """Substitute the attempt's placeholder values into argv, stdin, env and cwd."""
    hints = {
        "model": "set profile.model or runner.overrides.model",
        "work_dir": "launch with a work_dir or project_root",
        "system_file": "give the agent a profile.system_prompt",
    }
    t = bound.template
    return RenderedCommand(
        [substitute(a, values, hints) for a in t.argv],
        substitute(t.stdin, values, hints) if t.stdin is not None else None,
        {k: substitute(v, values, hints) for k, v in t.env.items()},
        substitute(bound.cwd, values, hints) if bound.cwd is not None else None,
    )


def render_system_prompt(text: str, prompt: Any) -> str:
    """Render a system prompt as a Jinja template; slots are the prompt's keys, else `directive`."""
    if "{{" not in text and "{%" not in text and "{#" not in text:
        return text
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    slots = prompt if isinstance(prompt, dict) else {"directive": prompt}
    return env.from_string(text).render(**slots)


def normalize_plain(
    stdout: bytes, stderr: str, exit_ok: bool, output: OutputDecl | None
) -> tuple[Any, bool, dict[str, Any]]:
    """`(value, ok, stats)` of a plain-mode child: parsed stdout (or `{raw, stderr}`), shaped by `output`."""
    text = stdout.decode("utf-8", errors="replace")
    stripped = text.strip()
    try:
        parsed = json.loads(stripped) if stripped else MISSING
        parse_error = None if parsed is not MISSING else "stdout is empty"
    except ValueError as exc:
        parsed, parse_error = MISSING, str(exc)
    raw = text.rstrip()
    if parsed is MISSING:
        if output is not None and output.format == "json":
            return {"raw": raw, "stderr": stderr, "parse_error": parse_error}, False, {}
        return {"raw": raw, "stderr": stderr}, exit_ok, {}
    if output is None:
        return parsed, exit_ok, {}
    value = parsed
    if output.result_ptr is not None:
        value = resolve_pointer(parsed, output.result_ptr)
        if value is MISSING:
            error = f"result_ptr '{output.result_ptr}' not found in the child's JSON output"
            return {"error": error, "raw": raw, "stderr": stderr}, False, {}
    ok = exit_ok
    if output.ok_from is not None and output.ok_from != "exit_code":
        ok = resolve_pointer(parsed, output.ok_from) is True
    return value, ok, _declared_stats(parsed, output)


def _declared_stats(parsed: Any, output: OutputDecl) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    if output.usage_ptr is not None:
        usage = resolve_pointer(parsed, output.usage_ptr)
        if isinstance(usage, dict):
            picked = _usage(usage)
            if picked:
                stats["usage"] = picked
    if output.model_ptr is not None:
        model = resolve_pointer(parsed, output.model_ptr)
        if isinstance(model, str):
            stats["model"] = model
    if output.num_turns_ptr is not None:
        turns = resolve_pointer(parsed, output.num_turns_ptr)
        if isinstance(turns, int) and not isinstance(turns, bool):
            stats["num_turns"] = turns
    return stats


def _usage(usage: dict[str, Any]) -> dict[str, int]:
    """Token counts from `input/output/total_tokens` or OpenAI's `prompt/completion_tokens`."""
    aliases = {
        "input_tokens": ("input_tokens", "prompt_tokens"),
        "output_tokens": ("output_tokens", "completion_tokens"),
        "total_tokens": ("total_tokens",),
    }
    picked: dict[str, int] = {}
    for key, names in aliases.items():
        for name in names:
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                picked[key] = value
                break
    return picked


def parse_stream_mode(value: Any, where: str) -> StreamMode | None:
    if value is None:
        return None
    try:
        return StreamMode(value)
    except ValueError:
        allowed = ", ".join(m.value for m in StreamMode)
        raise InvalidAgentSpec(f"{where}: unknown stream_mode {value!r}", f"use one of {allowed}, or omit it") from None


def _parse_output(obj: Any, where: str) -> OutputDecl | None:
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise InvalidAgentSpec(f"{where}: 'output' must be an object", None)
    _no_unknown_keys(obj, _OUTPUT_KEYS, f"{where} output")
    fmt = obj.get("format")
    if fmt is not None and fmt != "json":
        raise InvalidAgentSpec(f'{where}: output.format must be "json", got {fmt!r}', "drop it or set it to json")
    stats = obj.get("stats") or {}
    if not isinstance(stats, Mapping):
        raise InvalidAgentSpec(f"{where}: output.stats must be an object", None)
    _no_unknown_keys(stats, _STATS_KEYS, f"{where} output.stats")
    ok_from = obj.get("ok_from")
    if ok_from != "exit_code":
        _check_pointer(ok_from, f"{where}: output.ok_from", 'or "exit_code"')
    result_ptr = obj.get("result_ptr")
    _check_pointer(result_ptr, f"{where}: output.result_ptr")
    ptrs = {key: stats.get(key) for key in sorted(_STATS_KEYS)}
    for key, ptr in ptrs.items():
        _check_pointer(ptr, f"{where}: output.stats.{key}")
    return OutputDecl(fmt, result_ptr, ok_from, ptrs["usage_ptr"], ptrs["model_ptr"], ptrs["num_turns_ptr"])


def _check_pointer(value: Any, what: str, alt: str = "") -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.startswith("/"):
        hint = f'e.g. "/result" {alt}'.strip()
        raise InvalidAgentSpec(f"{what} must be a JSON pointer starting with '/', got {value!r}", hint)


def _no_unknown_keys(obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise InvalidAgentSpec(
            f"{where}: unknown key(s) {', '.join(unknown)}", f"allowed: {', '.join(sorted(allowed))}"
        )


def _opt_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidAgentSpec(f"{where}: '{key}' must be a string", None)
    return value


def _first_str(*values: Any) -> str | None:
    for value in values:
        if isinstance(value, str) and value:
            return value
    return None


__all__ = [
    "MISSING",
    "PLACEHOLDERS",
    "BoundTemplate",
    "MissingPlaceholder",
    "OutputDecl",
    "RenderedCommand",
    "SubprocessDef",
    "bind_template",
    "normalize_plain",
    "parse_stream_mode",
    "placeholders_in",
    "render_command",
    "render_system_prompt",
    "resolve_pointer",
    "substitute",
]
