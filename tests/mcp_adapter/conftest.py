"""The SDK's own MCP client over stdio against a real `mse mcp` child process."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult

from tests.conftest import mse_env


@asynccontextmanager
async def mse_mcp(cwd: Path, env: dict[str, str] | None = None) -> AsyncIterator[Client]:
    """A connected client to `python -m mlua_swarm mcp` started in `cwd`."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mlua_swarm", "mcp"], env=mse_env(env), cwd=str(cwd)
    )
    async with Client(params) as client:
        yield client


def payload(result: CallToolResult) -> Any:
    """The tool's answer: its structured content, or the JSON of its text."""
    assert not result.is_error, result.content[0].text if result.content else result
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)  # type: ignore[union-attr]


def error_text(result: CallToolResult) -> str:
    assert result.is_error, f"expected a tool error, got {result.structured_content}"
    return "\n".join(getattr(c, "text", "") for c in result.content)
