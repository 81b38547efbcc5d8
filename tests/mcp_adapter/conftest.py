"""The SDK's own MCP client over stdio against a real `mse mcp` child process."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult

from tests.conftest import mse_env
from tests.serverkit import served  # noqa: F401  (fixture: a real `mse serve` process)


@asynccontextmanager
async def mse_mcp(cwd: Path, env: dict[str, str] | None = None) -> AsyncIterator[Client]:
    """A connected client to `python -m mlua_swarm mcp` started in `cwd`."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mlua_swarm", "mcp"], env=mse_env(env), cwd=str(cwd)
    )
    async with Client(params) as client:
        yield client


LISTENING = re.compile(r"mse mcp: listening on (http://\S+)")


def mse_mcp_http(cwd: Path, *args: str) -> subprocess.Popen[str]:
    """`python -m mlua_swarm mcp --transport streamable-http ARGS` started in `cwd` (stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "mlua_swarm", "mcp", "--transport", "streamable-http", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=mse_env(None),
        cwd=cwd,
        start_new_session=True,
    )


@contextmanager
def mse_mcp_http_url(cwd: Path, *args: str) -> Iterator[str]:
    """`mse_mcp_http` once it listens: its URL; the server is stopped (SIGTERM) on exit."""
    proc = mse_mcp_http(cwd, *args)
    try:
        assert proc.stderr is not None
        match = None
        for line in proc.stderr:
            match = LISTENING.search(line)
            if match:
                break
        assert match is not None, "mse mcp exited before listening"
        yield match.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def payload(result: CallToolResult) -> Any:
    """The tool's answer: its structured content, or the JSON of its text."""
    assert not result.is_error, result.content[0].text if result.content else result
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)  # type: ignore[union-attr]


def error_text(result: CallToolResult) -> str:
    assert result.is_error, f"expected a tool error, got {result.structured_content}"
    return "\n".join(getattr(c, "text", "") for c in result.content)
