"""Cancellation mid-stream, and the failures that must name the setting to fix."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from mlua_swarm.core.engine import Engine
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.tokens import CapToken

from ..conftest import alive
from .conftest import agent, facts_server, start
from .fakes import AnthropicServer, OpenAIServer, Reply


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_cancelling_mid_stream_ends_the_step_and_its_mcp_server(
    engine: Engine, op: CapToken, tmp_path: Path, provider: str, request: pytest.FixtureRequest
) -> None:
    server: OpenAIServer | AnthropicServer = request.getfixturevalue(f"{provider}_server")
    server.play(Reply(text="Let me think about this for a while", hang=True))
    pidfile = tmp_path / "mcp.pid"
    spawner = agent(f"{provider}:test-model", tools=["mcp__facts__lookup"], mcp_servers=[facts_server(pidfile)])
    step = await start(engine, op)
    events = engine.events(("worker_output",))
    running = asyncio.create_task(engine.run_step(op, step, spawner))
    async for event in events:
        if event.data["event"]["type"] == "partial":
            break
    pid = int(pidfile.read_text())
    assert alive(pid)
    await engine.cancel_task(op, step)
    outcome = await asyncio.wait_for(running, 30)
    assert outcome.kind == "cancelled"
    assert not alive(pid), "the MCP server outlived the cancelled attempt"
    assert await asyncio.to_thread(server.client_hung_up.wait, 10), "the model stream was not closed"


async def test_a_missing_openai_key_names_the_variable(engine: Engine, op: CapToken) -> None:
    step = await start(engine, op)
    where = r"where this step runs \(a run on `mse serve` reads the server's environment\)"
    with pytest.raises(DispatchFailed, match=rf"OPENAI_API_KEY is not set {where}.*MSE_LLM_BASE_URL"):
        await engine.run_step(op, step, agent())


async def test_a_missing_anthropic_key_names_the_variable(engine: Engine, op: CapToken) -> None:
    step = await start(engine, op)
    with pytest.raises(DispatchFailed, match="ANTHROPIC_API_KEY is not set"):
        await engine.run_step(op, step, agent("anthropic:claude-sonnet-4-0"))


async def test_a_rejected_key_names_the_variable(
    engine: Engine, op: CapToken, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    openai_server.play(Reply.error(401))
    step = await start(engine, op)
    with pytest.raises(DispatchFailed, match="rejected the API key \\(401\\): set a valid OPENAI_API_KEY"):
        await engine.run_step(op, step, agent())
    assert openai_server.headers[0]["authorization"] == "Bearer sk-wrong"


async def test_a_rejected_anthropic_key_names_the_agents_own_key_variable(
    engine: Engine, op: CapToken, anthropic_server: AnthropicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAM_CLAUDE_KEY", "team-key")
    anthropic_server.play(Reply.error(401))
    step = await start(engine, op)
    with pytest.raises(DispatchFailed, match="set a valid TEAM_CLAUDE_KEY"):
        await engine.run_step(op, step, agent("anthropic:m", api_key_env="TEAM_CLAUDE_KEY"))
    sent = anthropic_server.headers[0]
    # The SDK sends the key as `x-api-key` or, in newer releases, as a bearer token.
    assert "team-key" in (sent.get("x-api-key"), sent.get("authorization", "").removeprefix("Bearer "))


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(
    ("model", "setting"), [("openai:m", "MSE_LLM_BASE_URL"), ("anthropic:m", "ANTHROPIC_BASE_URL")]
)
async def test_an_unreachable_endpoint_names_the_base_url_setting(
    engine: Engine, op: CapToken, monkeypatch: pytest.MonkeyPatch, model: str, setting: str
) -> None:
    monkeypatch.setenv(setting, closed_port_url() + ("/v1" if setting == "MSE_LLM_BASE_URL" else ""))
    step = await start(engine, op)
    with pytest.raises(DispatchFailed, match=f"cannot reach the .* endpoint .*check {setting}"):
        await engine.run_step(op, step, agent(model))


async def test_a_spec_base_url_is_named_when_unreachable(engine: Engine, op: CapToken) -> None:
    step = await start(engine, op)
    with pytest.raises(DispatchFailed, match=r"check spec\.base_url"):
        await engine.run_step(op, step, agent(base_url=closed_port_url() + "/v1"))


async def test_an_mcp_server_that_cannot_start_fails_the_step_with_its_command(
    engine: Engine, op: CapToken, openai_server: OpenAIServer
) -> None:
    spawner = agent(tools=["mcp__ghost__x"], mcp_servers=[{"name": "ghost", "command": "/nonexistent/ghost-mcp"}])
    step = await start(engine, op)
    with pytest.raises(DispatchFailed, match="MCP server 'ghost' \\(/nonexistent/ghost-mcp\\) failed to start"):
        await engine.run_step(op, step, spawner)
