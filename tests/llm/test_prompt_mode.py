"""Prompt mode end to end: the real SDK clients against loopback servers, tools from a real MCP server."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlua_swarm.core.engine import Engine
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker.output import Partial, Progress

from ..conftest import alive
from .conftest import agent, facts_server, start
from .fakes import AnthropicServer, OpenAIServer, Reply

VERDICT = {"channel": "body", "values": ["PASS", "FAIL"]}


async def test_openai_agent_calls_an_mcp_tool_and_returns_a_verdict(
    engine: Engine, op: CapToken, openai_server: OpenAIServer, tmp_path: Path
) -> None:
    openai_server.play(Reply(tool_calls=[("mcp__facts__lookup", {"key": "status"})]), Reply(text="PASS\n"))
    used, unused = tmp_path / "facts.pid", tmp_path / "unused.pid"
    servers = [facts_server(used), facts_server(unused, name="unused")]
    spawner = agent(tools=["mcp__facts__lookup"], mcp_servers=servers)
    step = await start(engine, op, verdict=VERDICT)
    outcome = await engine.run_step(op, step, spawner)
    assert (outcome.kind, outcome.value) == ("pass", "PASS")
    assert not alive(int(used.read_text())), "the MCP server outlived its attempt"
    assert not unused.exists(), "a server no tool grants was started"

    first, second = openai_server.requests
    assert first["messages"][0] == {"role": "system", "content": "You check releases. Answer PASS or FAIL."}
    assert first["messages"][1] == {"role": "user", "content": "Is the release green?"}
    # The grant is per server: both tools of `facts`, nothing of the undeclared `unused` server.
    assert sorted(t["function"]["name"] for t in first["tools"]) == ["mcp__facts__add", "mcp__facts__lookup"]
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_0", "content": "green"}

    stats = engine.worker_stats(step, 1)
    assert stats["worker_kind"] == "agent_block" and stats["provider"] == "openai"
    assert stats["usage"] == {"input_tokens": 20, "output_tokens": 10, "total_tokens": 30, "cached_input_tokens": 0}
    assert (stats["num_turns"], stats["model"], stats["cost_usd"]) == (2, "test-model", None)
    partials = [e.chunk.as_value() for e in engine.output_tail(step, 1) if isinstance(e, Partial)]
    assert partials == ["PASS\n"]


async def test_anthropic_agent_streams_text_and_prices_the_usage(
    engine: Engine, op: CapToken, anthropic_server: AnthropicServer
) -> None:
    anthropic_server.model = "claude-sonnet-4-20250514"
    anthropic_server.play(
        Reply(text="Checking the owner.", tool_calls=[("mcp__facts__lookup", {"key": "owner"})], input_tokens=1000),
        Reply(text="The owner is set, so PASS", input_tokens=800, output_tokens=200, cached_tokens=1000),
    )
    spawner = agent("anthropic:claude-sonnet-4-20250514", tools=["mcp__facts__lookup"], mcp_servers=[facts_server()])
    step = await start(engine, op)
    outcome = await engine.run_step(op, step, spawner)
    assert (outcome.kind, outcome.value) == ("pass", "The owner is set, so PASS")

    first, second = anthropic_server.requests
    assert first["system"] == "You check releases. Answer PASS or FAIL."
    assert [t["name"] for t in first["tools"]] == ["mcp__facts__lookup", "mcp__facts__add"]
    assert second["messages"][-1]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_0", "content": "platform-team", "is_error": False}
    ]
    stats = engine.worker_stats(step, 1)
    # Anthropic reports cache reads apart from input_tokens; our input_tokens counts both.
    assert stats["usage"] == {
        "input_tokens": 2800,
        "output_tokens": 205,
        "total_tokens": 3005,
        "cached_input_tokens": 1000,
    }
    assert stats["model"] == "claude-sonnet-4-20250514"
    # claude-sonnet-4: $3 input, $0.30 cached input, $15 output per million tokens.
    assert stats["cost_usd"] == pytest.approx((1800 * 3 + 1000 * 0.30 + 205 * 15) / 1e6)
    text = "".join(e.chunk.as_value() for e in engine.output_tail(step, 1) if isinstance(e, Partial))
    assert text == "Checking the owner.The owner is set, so PASS"


async def test_an_answer_outside_the_verdict_contract_fails_the_step(
    engine: Engine, op: CapToken, openai_server: OpenAIServer
) -> None:
    openai_server.play(Reply(text="MAYBE"))
    step = await start(engine, op, verdict=VERDICT)
    with pytest.raises(DispatchFailed, match="MAYBE"):
        await engine.run_step(op, step, agent())


async def test_a_429_is_retried_after_the_retry_after_delay(
    engine: Engine, op: CapToken, openai_server: OpenAIServer
) -> None:
    openai_server.play(Reply.error(429, **{"retry-after": "1"}), Reply(text="PASS"))
    step = await start(engine, op)
    loop_time = __import__("time").monotonic
    began = loop_time()
    outcome = await engine.run_step(op, step, agent())
    assert (outcome.kind, outcome.value) == ("pass", "PASS")
    assert loop_time() - began >= 1.0
    assert len(openai_server.requests) == 2
    notes = [e.note for e in engine.output_tail(step, 1) if isinstance(e, Progress) and e.stage == "llm_retry"]
    assert notes == ["retry 1 in 1.00s after HTTP 429"]


async def test_a_5xx_from_anthropic_is_retried_honouring_retry_after_ms(
    engine: Engine, op: CapToken, anthropic_server: AnthropicServer
) -> None:
    anthropic_server.play(Reply.error(529, **{"retry-after-ms": "50"}), Reply.error(503), Reply(text="PASS"))
    step = await start(engine, op)
    outcome = await engine.run_step(op, step, agent("anthropic:test-model", max_retries=2))
    assert (outcome.kind, outcome.value) == ("pass", "PASS")
    assert len(anthropic_server.requests) == 3


async def test_retries_stop_after_max_retries(engine: Engine, op: CapToken, openai_server: OpenAIServer) -> None:
    openai_server.play(Reply.error(500, **{"retry-after": "0"}), Reply.error(500, **{"retry-after": "0"}))
    step = await start(engine, op)
    with pytest.raises(DispatchFailed, match="answered HTTP 500"):
        await engine.run_step(op, step, agent(max_retries=1))
    assert len(openai_server.requests) == 2


async def test_the_turn_limit_blocks_the_step(engine: Engine, op: CapToken, openai_server: OpenAIServer) -> None:
    call = Reply(tool_calls=[("mcp__facts__add", {"a": 1, "b": 2})])
    openai_server.play(call, call)
    spawner = agent(tools=["mcp__facts__add"], mcp_servers=[facts_server()], max_turns=2)
    step = await start(engine, op)
    outcome = await engine.run_step(op, step, spawner)
    assert outcome.kind == "blocked"
    assert engine.worker_stats(step, 1)["num_turns"] == 2
    assert openai_server.requests[1]["messages"][-1]["content"] == "3"
