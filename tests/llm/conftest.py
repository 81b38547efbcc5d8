"""Fixtures for the LLM tests: loopback model servers, a real stdio MCP server, a clean environment."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker.agent_block import AgentBlockKind, AgentBlockSpawner
from mlua_swarm.worker.kinds import LinkEnv

from .fakes import AnthropicServer, OpenAIServer

MCP_SERVER = Path(__file__).with_name("mcp_tool_server.py")
SETTINGS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "MSE_LLM_BASE_URL",
    "ANTHROPIC_BASE_URL",
    "MSE_LLM_PROVIDER",
    "MSE_LLM_MODEL",
    "MSE_LLM_PRICES",
)


@pytest.fixture(autouse=True)
def _clean_llm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's real keys or endpoints: nothing may leave the machine."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        monkeypatch.setenv("MSE_LLM_BASE_URL", server.base_url)
        yield server


@pytest.fixture
def anthropic_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[AnthropicServer]:
    with AnthropicServer() as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        yield server


def facts_server(pidfile: Path | None = None, name: str = "facts") -> dict[str, Any]:
    """The `spec.mcp_servers` entry of the test MCP server (writing its pid to `pidfile`)."""
    return {"name": name, "command": sys.executable, "args": [str(MCP_SERVER), *([str(pidfile)] if pidfile else [])]}


def agent(
    model: str | None = "openai:test-model",
    *,
    tools: list[str] | None = None,
    system: str = "You check releases. Answer PASS or FAIL.",
    base_dir: Path | None = None,
    **spec: Any,
) -> AgentBlockSpawner:
    profile: dict[str, Any] = {"system_prompt": system, "tools": tools or []}
    if model is not None:
        profile["model"] = model
    raw = {"name": "checker", "kind": "agent_block", "spec": spec, "profile": profile}
    return AgentBlockKind().build(raw, LinkEnv(base_dir=base_dir or Path.cwd()))


async def start(engine: Engine, op: CapToken, directive: Any = "Is the release green?", **task: Any) -> Any:
    return await engine.start_task(op, TaskSpec("checker", directive, **task))
