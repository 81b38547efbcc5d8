"""Tool arguments no JSON writer produces, sent as raw JSON-RPC lines to a real `mse mcp` over stdio
(the SDK's client would write NaN as null, so it cannot send them)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from tests.conftest import mse_env

ECHO = {
    "id": "echo",
    "flow": {"kind": "step", "ref": "up", "in": {"op": "path", "at": "$.t"}, "out": {"op": "path", "at": "$.u"}},
    "agents": [{"name": "up", "kind": "lua", "spec": {"source": "return _PROMPT"}}],
}


async def _answer(proc: asyncio.subprocess.Process, line: str) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line.encode() + b"\n")
    await proc.stdin.drain()
    answer: dict[str, Any] = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
    return answer


async def test_a_tool_call_whose_arguments_hold_nan_is_refused(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "mlua_swarm", "mcp"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=mse_env(None),
        cwd=tmp_path,
    )
    try:
        hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}}
        await _answer(proc, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}))
        assert proc.stdin is not None
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode() + b"\n")
        call = {"name": "swarm_run", "arguments": {"blueprint": {"kind": "inline", "blueprint": ECHO}}}
        for number, init in ((2, '{"t": NaN}'), (3, '{"t": [1, -Infinity]}')):
            line = json.dumps({"jsonrpc": "2.0", "id": number, "method": "tools/call", "params": call})
            refused = await _answer(proc, line.replace('"arguments": {', f'"arguments": {{"init_ctx": {init}, '))
            text = refused["result"]["content"][0]["text"]
            assert refused["result"]["isError"] is True and "[invalid-arguments] swarm_run" in text, refused
            assert "not a finite number" in text or "NaN or an infinity" in text, text
        line = json.dumps({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": call})
        ran = await _answer(proc, line.replace('"arguments": {', '"arguments": {"init_ctx": {"t": "ok"}, '))
        assert ran["result"]["isError"] is False and ran["result"]["structuredContent"]["final_ctx"]["u"] == "ok"
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
