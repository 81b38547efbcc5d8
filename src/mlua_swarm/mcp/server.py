"""`mse mcp`: the engine as MCP tools and resources, on stdio or streamable HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.mcpserver import MCPServer

from .resources import all_resources
from .state import McpState, package_version
from .toolkit import ArgumentCheck, ToolBox
from .tools_bp import add_blueprint_tools
from .tools_operator import add_operator_tools
from .tools_run import add_run_tools

INSTRUCTIONS = """mlua-swarm (mse) runs Blueprints: declarative flows whose steps are dispatched to
workers (Python functions, Lua, child processes, LLM agents, or you, as an operator).
Author: bp_new -> edit -> bp_build (registers on mse serve) -> bp_doctor.
Run: swarm_run (inline/file here, or by id on mse serve), swarm_status, swarm_cancel.
Drive operator steps: mse_operator_join, swarm_run by id, then loop mse_pending_wait -> work ->
mse_ack. Guides: resources mse://guides/getting-started and mse://guides/operator-execution-model."""


def build_server(state: McpState | None = None) -> MCPServer[Any]:
    """The MCP server with every tool and resource; `state` is shared by all tool calls."""
    state = state or McpState()
    box = ToolBox()
    add_blueprint_tools(box, state)
    add_run_tools(box, state)
    add_operator_tools(box, state)
    tools = box.tools()

    @asynccontextmanager
    async def lifespan(_server: MCPServer[Any]) -> AsyncIterator[None]:
        try:
            yield None
        finally:
            await state.aclose()

    server: MCPServer[Any] = MCPServer(
        "mse",
        title="mlua-swarm",
        instructions=INSTRUCTIONS,
        version=package_version(),
        tools=tools,
        resources=all_resources(tools),
        middleware=[ArgumentCheck(box, tools)],
        lifespan=lifespan,
        log_level="WARNING",
    )
    return server


__all__ = ["INSTRUCTIONS", "build_server"]
