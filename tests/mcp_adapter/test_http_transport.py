"""`mse mcp --transport streamable-http`: the same tools for a client that connects to a URL."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import anyio
from mcp import Client

from tests.conftest import mse_env
from tests.mcp_adapter.conftest import payload

LISTENING = re.compile(r"mse mcp: listening on (http://\S+)")


def test_streamable_http_serves_the_tools(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlua_swarm", "mcp", "--transport", "streamable-http", "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=mse_env(None),
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        url = None
        for line in proc.stderr:
            match = LISTENING.search(line)
            if match:
                url = match.group(1)
                break
        assert url is not None, "mse mcp exited before listening"

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
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
