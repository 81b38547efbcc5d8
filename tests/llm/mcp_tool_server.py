"""A real stdio MCP server for the LLM tests, built on the `mcp` SDK's server side.

`python mcp_tool_server.py [PIDFILE]` serves two tools over stdin/stdout: `lookup(key)` reads a
small fixed table, `add(a, b)` adds. With PIDFILE it first writes its process id there, so a test
can check the process is gone after the attempt ends.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer

FACTS = {"release": "1.4.2", "owner": "platform-team", "status": "green"}

server = MCPServer("facts")


@server.tool()
def lookup(key: str) -> str:
    """Look a fact up by its key (release, owner, status)."""
    if key not in FACTS:
        raise ValueError(f"no fact named {key!r}")
    return FACTS[key]


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


if __name__ == "__main__":
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(str(os.getpid()))
    server.run("stdio")
