"""The agent loop: ask the model, run the tools it calls, feed the results back, until it answers.

One `run_agent` call is one `agent.run{...}`: a fresh conversation (system prompt + prompt) with
the tools of the given MCP servers. Each turn streams its text to `on_text`; usage is added to the
attempt's `Meter` as each turn ends, so a cancelled or failed attempt still reports what it spent.
The loop stops when the model answers without tool calls (ok) or after `max_turns` turns (not ok).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import Endpoint
from .mcp_client import McpError, McpHub
from .prices import PriceFileError, cost_usd
from .providers import RetryNotice, RetryPolicy, TextSink, ToolCall, open_conversation
from .usage import Usage

DEFAULT_MAX_TURNS = 16
DEFAULT_MAX_TOKENS = 4096


@dataclass(slots=True)
class Meter:
    """What the LLM calls of one attempt used, summed over every `agent.run` and turn."""

    usage: Usage = field(default_factory=Usage)
    num_turns: int = 0
    model: str | None = None
    provider: str | None = None
    calls: int = 0

    def stats(self) -> dict[str, Any]:
        """The step-stats fields: usage, model, num_turns, cost_usd (None when the price is unknown).

        A broken `MSE_LLM_PRICES` file leaves the cost unknown and says why in `cost_error`: the
        step's work is done and paid for, so a price table must not fail it.
        """
        out: dict[str, Any] = {"usage": self.usage.to_json(), "model": self.model, "num_turns": self.num_turns}
        try:
            out["cost_usd"] = cost_usd(self.model, self.usage)
        except PriceFileError as exc:
            out["cost_usd"] = None
            out["cost_error"] = str(exc)
        return out


@dataclass(slots=True)
class AgentOutcome:
    content: str
    ok: bool
    num_turns: int
    usage: Usage
    model: str | None
    messages: list[dict[str, Any]]
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "content": self.content,
            "ok": self.ok,
            "num_turns": self.num_turns,
            "usage": self.usage.to_json(),
            "model": self.model,
            "messages": self.messages,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


async def run_agent(
    endpoint: Endpoint,
    *,
    prompt: str,
    system: str,
    hub: McpHub,
    servers: Sequence[str],
    meter: Meter,
    on_text: TextSink,
    max_turns: int = DEFAULT_MAX_TURNS,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    retry: RetryPolicy | None = None,
    on_retry: RetryNotice | None = None,
) -> AgentOutcome:
    """Run one agent conversation to its answer; raises `LlmError` when the endpoint fails."""
    conversation = await open_conversation(endpoint, system, prompt, max_tokens=max_tokens, retry=retry)
    conversation.on_retry = on_retry
    meter.provider = endpoint.provider
    meter.calls += 1
    usage = Usage()
    model: str | None = None
    text = ""
    tools = hub.tools(servers)
    allowed = {t.name for t in tools}
    try:
        for turn_no in range(1, max_turns + 1):
            turn = await conversation.turn(tools, on_text)
            usage.add(turn.usage)
            meter.usage.add(turn.usage)
            meter.num_turns += 1
            model = turn.model or model or endpoint.model
            meter.model = model
            text = turn.text
            if not turn.tool_calls:
                # Models often end an answer with a newline; a verdict contract compares exact words.
                return AgentOutcome(text.strip(), True, turn_no, usage, model, conversation.messages)
            results = [await _run_tool(hub, allowed, call) for call in turn.tool_calls]
            conversation.add_tool_results(results)
        error = f"turn limit reached: the model still wanted tools after {max_turns} turns (raise spec.max_turns)"
        return AgentOutcome(text, False, max_turns, usage, model, conversation.messages, error)
    finally:
        await conversation.aclose()


async def _run_tool(hub: McpHub, allowed: set[str], call: ToolCall) -> tuple[ToolCall, str, bool]:
    if call.bad_arguments is not None:
        return call, f"the arguments were not a JSON object: {call.bad_arguments[:200]}", True
    target = hub.find(call.name) if call.name in allowed else None
    if target is None:
        return call, f"no tool named {call.name!r} is available; use one of: {', '.join(sorted(allowed))}", True
    try:
        text, is_error = await hub.call(target[0], target[1], call.arguments)
    except McpError as exc:
        return call, exc.message, True
    return call, text, is_error


__all__ = ["DEFAULT_MAX_TOKENS", "DEFAULT_MAX_TURNS", "AgentOutcome", "Meter", "run_agent"]
