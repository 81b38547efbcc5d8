"""How `mse mcp` declares its tools: strict argument models, descriptions with an example, and
refusals that tell the model how to fix its call.

Every tool is a plain async function whose parameters carry their own JSON Schema (types, enums,
ranges, descriptions). `strict_tool` turns it into an SDK `Tool` whose argument model refuses
unknown keys, so a misspelt argument is an error rather than silently ignored. `ArgumentCheck`
is the server middleware that validates a `tools/call` before the SDK does and answers a bad
call with a tool error naming each problem and an example of a correct call.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, ValidationError

from ..jsontext import JsonValueError, check_value


class ToolFailure(ToolError):
    """A tool refused or failed: `message` says what happened, `hint` what to do about it."""

    def __init__(self, code: str, message: str, hint: str | None = None, details: Any = None) -> None:
        self.code = code
        self.message = message
        self.hint = hint
        self.details = details
        super().__init__(render_failure(code, message, hint, details))


def render_failure(code: str, message: str, hint: str | None, details: Any = None) -> str:
    text = f"[{code}] {message}"
    if details is not None:
        text += "\ndetails: " + json.dumps(details, ensure_ascii=False, default=str)[:4000]
    if hint:
        text += f"\nhint: {hint}"
    return text


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool: its function, what it is for (for a model), and one correct call."""

    name: str
    fn: Callable[..., Awaitable[Any]]
    description: str
    example: Mapping[str, Any]
    read_only: bool = False
    destructive: bool = False
    open_world: bool = False


@dataclass(slots=True)
class ToolBox:
    """The tools of one `mse mcp` process, in the order they are listed."""

    specs: list[ToolSpec] = field(default_factory=list)

    def add(self, spec: ToolSpec) -> None:
        if any(s.name == spec.name for s in self.specs):
            raise ValueError(f"tool {spec.name} declared twice")
        self.specs.append(spec)

    def tools(self) -> list[Tool]:
        return [strict_tool(spec) for spec in self.specs]


def strict_tool(spec: ToolSpec) -> Tool:
    """The SDK tool for `spec`, with an argument model that refuses unknown keys."""
    description = spec.description.strip() + "\n\nExample arguments: " + json.dumps(spec.example)
    annotations = ToolAnnotations(
        read_only_hint=spec.read_only,
        destructive_hint=spec.destructive,
        open_world_hint=spec.open_world,
    )
    tool = Tool.from_function(spec.fn, name=spec.name, description=description, annotations=annotations)
    base = tool.fn_metadata.arg_model
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    strict = cast(type[ArgModelBase], type(base.__name__, (base,), {"model_config": config}))
    tool.fn_metadata.arg_model = strict
    tool.parameters = strict.model_json_schema()
    return tool


def describe_errors(exc: ValidationError, model: type[BaseModel]) -> list[str]:
    """One readable line per problem in a refused call."""
    known = sorted(model.model_fields)
    lines: list[str] = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
            lines.append(f"{where}: unknown argument (this tool takes: {', '.join(known)})")
        elif err["type"] == "missing":
            lines.append(f"{where}: required")
        else:
            lines.append(f"{where}: {err['msg']}")
    return lines


class ArgumentCheck:
    """Server middleware: a `tools/call` whose arguments do not fit the tool's schema gets a tool
    error listing each problem and an example of a correct call, before the tool runs."""

    def __init__(self, box: ToolBox, tools: list[Tool]) -> None:
        self._examples = {spec.name: spec.example for spec in box.specs}
        self._tools = {tool.name: tool for tool in tools}

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call" or not isinstance(ctx.params, Mapping):
            return await call_next(ctx)
        name = ctx.params.get("name")
        tool = self._tools.get(name) if isinstance(name, str) else None
        arguments = ctx.params.get("arguments") or {}
        if tool is None or not isinstance(arguments, dict):
            return await call_next(ctx)
        assert isinstance(name, str)
        try:
            tool.fn_metadata.validate_arguments(arguments)
        except ValidationError as exc:
            return self._refusal(name, describe_errors(exc, tool.fn_metadata.arg_model))
        try:
            check_value(arguments)
        except JsonValueError as exc:
            # JSON-RPC parsing lets NaN and Infinity through; as values of a run they could not be written back out.
            return self._refusal(name, [f"(arguments): {exc}"])
        return await call_next(ctx)

    def _refusal(self, name: str, problems: list[str]) -> CallToolResult:
        text = render_failure(
            "invalid-arguments",
            f"{name} refused its arguments:\n  " + "\n  ".join(problems),
            f"fix the listed arguments; a correct call looks like {json.dumps(self._examples[name])} "
            "(full schemas: resource mse://api/mcp-tools)",
        )
        return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


__all__ = ["ArgumentCheck", "ToolBox", "ToolFailure", "ToolSpec", "describe_errors", "render_failure", "strict_tool"]
