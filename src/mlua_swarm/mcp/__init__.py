"""`mse mcp`: the engine as MCP tools for AI assistants (see `docs/mcp.md`)."""

from __future__ import annotations

from .server import build_server
from .state import McpState

__all__ = ["McpState", "build_server"]
