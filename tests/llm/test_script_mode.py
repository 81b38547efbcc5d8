"""Script mode: a Lua script with `agent`, `bus`, `mcp` and `std.json` stages parts and emits the result."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlua_swarm.core.engine import Engine
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker.kinds import InvalidAgentSpec

from .conftest import MCP_SERVER, agent, start
from .fakes import OpenAIServer, Reply

REVIEW = """
local agent = require("agent")
local json = require("std.json")
assert(std.json == json and bus == require("bus") and mcp == require("mcp"))

local facts = mcp.connect({ name = "facts", command = _PYTHON, args = { _MCP_SERVER } })
local release = mcp.call("facts", "lookup", { key = "release" }).content
local sum = mcp.call("facts", "add", { a = 40, b = 2 }).content
bus.emit("artifact", { name = "facts", content = { release = release, sum = sum, tools = facts.tools } })

local answer = agent.run({ prompt = "Release " .. release .. " ok?", system = _CONTEXT })
bus.emit("artifact", { name = "notes", content = json.decode(answer.content) })
bus.emit("result", { content = json.encode({ verdict = "PASS", release = release }), ok = answer.ok })
bus.emit("result", { content = "a second terminal emit is ignored" })
"""


def script(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "review.lua"
    prelude = f"local _PYTHON, _MCP_SERVER = {_lua_str(__import__('sys').executable)}, {_lua_str(str(MCP_SERVER))}\n"
    path.write_text(prelude + source, encoding="utf-8")
    return path


def _lua_str(text: str) -> str:
    return "[==[" + text + "]==]"


async def test_a_script_stages_parts_calls_tools_and_the_model_and_emits_once(
    engine: Engine, op: CapToken, openai_server: OpenAIServer, tmp_path: Path
) -> None:
    openai_server.play(Reply(text='{"risk": "low"}', input_tokens=7, output_tokens=3))
    spawner = agent(script_path=str(script(tmp_path, REVIEW)))
    step = await start(engine, op)
    outcome = await engine.run_step(op, step, spawner)
    assert outcome.kind == "pass"
    assert outcome.value == {
        "out": {"verdict": "PASS", "release": "1.4.2"},
        "parts": {
            "facts": {"release": "1.4.2", "sum": "42", "tools": ["mcp__facts__lookup", "mcp__facts__add"]},
            "notes": {"risk": "low"},
        },
    }
    assert engine.staged_parts(step, 1) == ["facts", "notes"]
    (request,) = openai_server.requests
    assert request["messages"] == [
        {"role": "system", "content": "You check releases. Answer PASS or FAIL."},
        {"role": "user", "content": "Release 1.4.2 ok?"},
    ]
    stats = engine.worker_stats(step, 1)
    assert stats["usage"]["total_tokens"] == 10 and stats["num_turns"] == 1


async def test_a_script_that_emits_no_result_fails_with_upstreams_message(
    engine: Engine, op: CapToken, tmp_path: Path
) -> None:
    spawner = agent(script_path=str(script(tmp_path, 'bus.emit("artifact", { name = "draft", content = 1 })\n')))
    step = await start(engine, op)
    with pytest.raises(DispatchFailed, match="agent-block script finished without emitting result via bus"):
        await engine.run_step(op, step, spawner)


async def test_a_script_reports_its_own_usage_when_it_calls_no_model(
    engine: Engine, op: CapToken, tmp_path: Path
) -> None:
    source = 'bus.emit("done", { response = "ok", ok = false, usage = { total_tokens = 12, output_tokens = 2 } })\n'
    spawner = agent("openai:gpt-4o-mini", script_path=str(script(tmp_path, source)))
    step = await start(engine, op)
    outcome = await engine.run_step(op, step, spawner)
    assert (outcome.kind, outcome.value) == ("blocked", "ok")
    stats = engine.worker_stats(step, 1)
    assert stats["usage"] == {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12, "cached_input_tokens": 0}
    assert stats["model"] == "openai:gpt-4o-mini"  # the declared model labels a script's own report
    assert stats["cost_usd"] == pytest.approx((10 * 0.15 + 2 * 0.60) / 1e6)


async def test_an_artifact_without_a_name_is_an_error_in_the_script(
    engine: Engine, op: CapToken, tmp_path: Path
) -> None:
    source = 'local ok, err = pcall(bus.emit, "artifact", { content = 1 })\nbus.emit("result", { content = err })\n'
    spawner = agent(script_path=str(script(tmp_path, source)))
    step = await start(engine, op)
    outcome = await engine.run_step(op, step, spawner)
    assert "requires a string `name`" in outcome.value


def test_declaring_mcp_tools_in_script_mode_is_a_compile_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidAgentSpec, match="script mode cannot enforce the declared MCP tools") as raised:
        agent(tools=["mcp__facts__lookup"], script_path=str(script(tmp_path, "")))
    assert raised.value.hint is not None and "spec.script_path" in raised.value.hint


async def test_a_broken_price_file_leaves_the_cost_unknown_and_says_why(
    engine: Engine, op: CapToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSE_LLM_PRICES", str(tmp_path / "missing.json"))
    source = 'bus.emit("done", { content = "ok", usage = { input_tokens = 3, output_tokens = 1 } })\n'
    step = await start(engine, op)
    outcome = await engine.run_step(op, step, agent("openai:gpt-4o", script_path=str(script(tmp_path, source))))
    assert outcome.kind == "pass"
    stats = engine.worker_stats(step, 1)
    assert stats["cost_usd"] is None
    assert "MSE_LLM_PRICES=" in stats["cost_error"] and "cannot read the price table" in stats["cost_error"]
