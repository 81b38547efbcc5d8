"""agent.md files: YAML front matter plus a Markdown body, read into an AgentDef JSON object.

The body becomes `profile.system_prompt` verbatim; `name` is required; `description`, `model`,
`effort`, `tools`, `worker_binding` and `lints` are first-class; other front matter keys go to
`profile.extras`. `spec`, `meta`, `runner` and `verdict` come from the referencing entry's siblings.
"""

from __future__ import annotations

from typing import Any, get_args

import blake3

from .schema import LintLevel

_FIRST_CLASS = ("name", "description", "model", "effort", "tools", "worker_binding", "lints")


class AgentMdError(ValueError):
    """An agent.md file is malformed; `hint` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def split_front_matter(text: str) -> tuple[str, str]:
    """The YAML front matter and the body of an agent.md text."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip("\r\n") != "---":
        raise AgentMdError("an agent.md must start with a '---' line", "open the file with '---', the YAML, then '---'")
    for index, line in enumerate(lines[1:], start=1):
        if line.rstrip("\r\n") == "---":
            return "".join(lines[1:index]), "".join(lines[index + 1 :])
    raise AgentMdError("the front matter has no closing '---' line", "close the YAML front matter with a '---' line")


def _tools(value: Any) -> list[str]:
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        raise AgentMdError("'tools' must be a comma-separated string or a list", "write tools: Read, Grep")
    return [str(item).strip() for item in items if str(item).strip()]


def _lints(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict):
        raise AgentMdError("'lints' must be a map of lint code to level", "e.g. lints: {verdict-value-unhandled: deny}")
    allowed = get_args(LintLevel)
    for key, level in value.items():
        if level not in allowed:
            raise AgentMdError(f"lint {key!r} has level {level!r}", f"use one of {', '.join(allowed)}")
    return {str(k): str(v) for k, v in value.items()} or None


def _optional_str(front: dict[str, Any], key: str) -> str | None:
    value = front.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise AgentMdError(f"{key!r} must be a string", None)
    return value


def parse_agent_md(text: str, *, kind: str) -> dict[str, Any]:
    """The AgentDef JSON object an agent.md text describes, with the given `kind`."""
    import yaml  # the YAML parser loads only when a Blueprint uses an agent.md

    from ..yamltext import load_yaml

    front_text, body = split_front_matter(text)
    try:
        front = load_yaml(front_text) or {}
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        hint = "fix the YAML between the '---' lines"
        raise AgentMdError(f"the front matter is not valid YAML: {exc}", hint) from None
    if not isinstance(front, dict):
        raise AgentMdError("the front matter must be a YAML map", "write 'key: value' lines between the '---' lines")
    name = front.get("name")
    if not isinstance(name, str) or not name:
        raise AgentMdError("the front matter needs a 'name'", "add 'name: my-agent' to the front matter")
    profile: dict[str, Any] = {
        "system_prompt": body,
        "tools": _tools(front["tools"]) if "tools" in front else [],
        "version_hash": blake3.blake3(body.encode("utf-8")).hexdigest(),
    }
    description = _optional_str(front, "description")
    if description is not None:
        profile["description"] = description.strip()
    for key in ("model", "effort", "worker_binding"):
        value = _optional_str(front, key)
        if value is not None:
            profile[key] = value
    extras = {str(k): v for k, v in front.items() if k not in _FIRST_CLASS}
    if extras:
        profile["extras"] = extras
    agent: dict[str, Any] = {"name": name, "kind": kind, "spec": None, "profile": profile}
    lints = _lints(front["lints"]) if "lints" in front else None
    if lints is not None:
        agent["lints"] = lints
    return agent


__all__ = ["AgentMdError", "parse_agent_md", "split_front_matter"]
