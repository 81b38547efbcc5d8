"""`mse mcp --transport streamable-http`: the same tools for a client that connects to a URL."""

from __future__ import annotations

from pathlib import Path

import anyio
from mcp import Client

from tests.mcp_adapter.conftest import mse_mcp_http_url, payload


def test_streamable_http_serves_the_tools(tmp_path: Path) -> None:
    with mse_mcp_http_url(tmp_path, "--port", "0") as url:

        async def use() -> None:
            async with Client(url) as client:
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert {"swarm_run", "mse_pending_wait"} <= names
                bp = {
                    "id": "echo",
                    "flow": {
                        "kind": "step",
                        "ref": "up",
                        "in": {"op": "path", "at": "$.t"},
                        "out": {"op": "path", "at": "$.u"},
                    },
                    "agents": [{"name": "up", "kind": "lua", "spec": {"source": "return string.upper(_PROMPT)"}}],
                }
                ran = payload(await client.call_tool("swarm_run", {"blueprint": bp, "init_ctx": {"t": "web"}}))
                assert ran["final_ctx"]["u"] == "WEB"

        anyio.run(use)
