"""The `agent_block` agent kind: an LLM agent run in-process, in prompt mode or script mode.

Spec keys (all optional, upstream's): `project_root`, `script_path`, `mcp_rpc_timeout_ms`
(default 30000) and `mcp_servers: [{name, command, args}]`; ours: `max_turns`, `max_tokens`,
`max_retries`, `base_url` and `api_key_env` (see `mlua_swarm.llm.config`), `limits` (Lua budgets).

*Prompt mode* (no `script_path`) runs a generated invoker: `agent.run` with `_PROMPT`, `_CONTEXT`
(the profile's system prompt) and the MCP servers the agent is granted (`profile.tools` entries
`mcp__<server>__<tool>` select servers of `spec.mcp_servers`), then `bus.emit("agent_result", r)`.
*Script mode* runs the Lua file at `script_path` in the sandbox with the modules `agent`, `bus`,
`mcp` and `std.json` (globals, and `require`-able); a script owns its MCP connections, so declaring
`mcp__` tools in this mode is a compile error.

A script reports through `bus.emit(kind, payload)`: kind `artifact` stages the part
`{name, content}`; any other kind is the result, first one wins (value: `payload.content`, else
`payload.response`, else the payload; ok: `payload.ok`, default true). MCP servers start at most
once per attempt and end with it; cancelling the step aborts the model stream, stops the MCP
servers and ends the script. The step's stats carry `usage`, `model`, `num_turns` and `cost_usd`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import threading
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..cancel import CancellationToken
from ..core.ctx import AgentContextView, Ctx
from ..dsl.sandbox import (
    AbortSignal,
    Bridge,
    LuaAborted,
    LuaLimits,
    LuaRun,
    LuaSandbox,
    LuaScriptError,
    default_pool,
    run_in_lua_thread,
)
from ..errors import EngineError
from ..ids import StepId, WorkerId
from ..jsontext import compact
from ..llm.config import PROVIDER_ENV, installed_providers, resolve_endpoint, split_model
from ..llm.errors import EXTRA_HINT, LlmError
from ..llm.loop import DEFAULT_MAX_TOKENS, DEFAULT_MAX_TURNS, Meter, run_agent
from ..llm.mcp_client import McpHub, McpServerSpec, granted_servers
from ..llm.providers import RetryPolicy
from ..llm.usage import Usage
from . import JoinHandleWorker, WorkerJoinHandler
from .adapter import SpawnerAdapter, WorkerResult, render_prompt, submit_result
from .errors import SpawnInternalError, WorkerCancelled, WorkerFailed
from .kinds import AgentKind, InvalidAgentSpec, LinkEnv
from .lua import _limits as lua_limits
from .lua import script_globals
from .output import Artifact, EngineSink, Inline, Partial, Progress

if TYPE_CHECKING:
    from ..core.engine import Engine
    from ..tokens import CapToken

T = TypeVar("T")

ARTIFACT_KIND = "artifact"
INVOKER_LABEL = "agent_block_invoker.lua"
INVOKER = """local agent = require("agent")
local result = agent.run({ prompt = _PROMPT, system = _CONTEXT, mcp_servers = _GRANTED_MCP_SERVERS })
bus.emit("agent_result", result)
"""
AGENT_LIMITS = LuaLimits(instructions=1_000_000_000, wall_secs=None)
"""Model calls can take minutes: no wall-time budget by default (a step timeout bounds the attempt)."""
SPEC_KEYS = frozenset(
    {
        "project_root",
        "script_path",
        "mcp_rpc_timeout_ms",
        "mcp_servers",
        "max_turns",
        "max_tokens",
        "max_retries",
        "base_url",
        "api_key_env",
        "limits",
    }
)


class AgentBlockWorker(JoinHandleWorker):
    """A running agent_block attempt."""


@dataclass(frozen=True, slots=True)
class AgentBlockSettings:
    """Everything an agent's attempts share, fixed at compile time."""

    agent: str
    source: str
    label: str
    script_mode: bool
    system: str
    declared_model: str | None
    granted: tuple[McpServerSpec, ...]
    project_root: Path
    rpc_timeout: float
    max_turns: int
    max_tokens: int
    max_retries: int
    base_url: str | None
    api_key_env: str | None
    limits: LuaLimits


class AgentBlockSpawner(SpawnerAdapter):
    worker_kind = "agent_block"

    def __init__(self, settings: AgentBlockSettings) -> None:
        self.settings = settings

    async def spawn(self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken) -> AgentBlockWorker:
        try:
            prompt = render_prompt(await engine.fetch_prompt(token, task_id))
        except EngineError as exc:
            raise SpawnInternalError(f"fetch_prompt: {exc}") from exc
        view = AgentContextView.from_ctx(ctx)
        globals_ = script_globals(prompt, ctx, view)
        globals_["_CONTEXT"] = self.settings.system
        if not self.settings.script_mode:
            globals_["_GRANTED_MCP_SERVERS"] = [s.to_json() for s in self.settings.granted]
        root = view.work_dir or view.project_root
        cancel = CancellationToken()
        run = _Attempt(engine, token, task_id, attempt, self.settings, cancel, Path(root) if root else None)
        task = asyncio.create_task(run.drive(globals_))
        return AgentBlockWorker(WorkerJoinHandler(WorkerId.new(), cancel, task))


class _Attempt:
    """One attempt: the Lua run, its bridges, its MCP servers and what its model calls used."""

    def __init__(
        self,
        engine: Engine,
        token: CapToken,
        task_id: StepId,
        attempt: int,
        settings: AgentBlockSettings,
        cancel: CancellationToken,
        project_root: Path | None,
    ) -> None:
        self.engine = engine
        self.token = token
        self.task_id = task_id
        self.attempt = attempt
        self.settings = settings
        self.cancel = cancel
        self.sink = EngineSink(engine, token, task_id, attempt)
        self.hub = McpHub(project_root or settings.project_root, settings.rpc_timeout)
        self.meter = Meter()
        self.result: Any = None
        self.llm_error: LlmError | None = None
        self.loop = asyncio.get_running_loop()
        self._inflight: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()

    async def drive(self, globals_: dict[str, Any]) -> None:
        signal = AbortSignal()
        unregister = self.cancel.on_cancel(lambda: self._stop(signal))
        label = self.settings.label
        try:
            try:
                await run_in_lua_thread(default_pool(), lambda sb: self._run(sb, globals_, signal), signal)
            except LuaAborted as exc:
                if exc.reason == "cancelled" or self.cancel.is_cancelled():
                    raise WorkerCancelled() from None
                knob = "instructions" if exc.reason == "budget" else "wall_secs"
                raise WorkerFailed(f"agent-block run failed [{label}]: {exc}; raise spec.limits.{knob}") from None
            except LuaScriptError as exc:
                if self.cancel.is_cancelled():
                    raise WorkerCancelled() from None
                detail = self.llm_error.message if self.llm_error is not None else exc.message
                raise WorkerFailed(f"agent-block run failed [{label}]: {detail}") from None
        finally:
            unregister()
            await self.hub.aclose()
            self.engine.record_worker_stats(self.task_id, self.attempt, self._stats())
        if self.result is None:
            raise WorkerFailed("agent-block script finished without emitting result via bus")
        value, ok, payload = self.result
        stats = self._stats(payload)
        submit_result(
            self.engine, self.token, self.task_id, self.attempt, WorkerResult(value, ok, stats), "agent_block"
        )

    def _stats(self, payload: Any = None) -> dict[str, Any]:
        """Measured usage; a script that made no model call may report its own (upstream's fields)."""
        meter = self.meter
        if meter.calls == 0 and isinstance(payload, Mapping):
            usage = Usage.from_json(payload.get("usage"))
            if usage is not None:
                meter.usage = usage
            if isinstance(payload.get("num_turns"), int):
                meter.num_turns = payload["num_turns"]
            if isinstance(payload.get("model"), str):
                meter.model = payload["model"]
        if meter.model is None:
            meter.model = self.settings.declared_model
        stats: dict[str, Any] = {"worker_kind": "agent_block", **meter.stats()}
        if meter.provider is not None:
            stats["provider"] = meter.provider
        return stats

    def _stop(self, signal: AbortSignal) -> None:
        """On cancel (loop thread): stop the script and every host call it is waiting on."""
        signal.fire("cancelled")
        with self._lock:
            pending = list(self._inflight)
        for future in pending:
            future.cancel()

    def _run(self, sandbox: LuaSandbox, globals_: dict[str, Any], signal: AbortSignal) -> LuaRun:
        namespaces: dict[str, Mapping[str, Bridge]] = {
            "agent": {"run": self.agent_run},
            "bus": {"emit": self.bus_emit},
            "mcp": {"connect": self.mcp_connect, "list_tools": self.mcp_list_tools, "call": self.mcp_call},
            "std.json": {"encode": _json_encode, "decode": _json_decode},
        }
        return sandbox.run(
            self.settings.source,
            f"={self.settings.label}",
            globals_=globals_,
            namespaces=namespaces,
            signal=signal,
            limits=self.settings.limits,
        )

    # ── bridges: called on the Lua thread; async work runs on the loop ──────────────────────────

    def _await(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.cancel.is_cancelled():
            coro.close()
            raise RuntimeError("the step was cancelled")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        with self._lock:
            self._inflight.add(future)
        try:
            if self.cancel.is_cancelled():
                future.cancel()
            return future.result()
        except concurrent.futures.CancelledError:
            raise RuntimeError("the step was cancelled") from None
        except LlmError as exc:
            self.llm_error = exc
            raise
        finally:
            with self._lock:
                self._inflight.discard(future)

    def agent_run(self, opts: Any = None) -> dict[str, Any]:
        if not isinstance(opts, Mapping):
            raise ValueError("agent.run takes a table: { prompt = ..., system = ..., mcp_servers = ... }")
        return self._await(self._agent_run(opts))

    async def _agent_run(self, opts: Mapping[str, Any]) -> dict[str, Any]:
        s = self.settings
        prompt = opts.get("prompt")
        if prompt is None:
            raise ValueError("agent.run needs a prompt")
        endpoint = resolve_endpoint(
            _opt(opts, "model", str) or s.declared_model, base_url=s.base_url, api_key_env=s.api_key_env
        )
        servers: list[str] = []
        for entry in opts.get("mcp_servers") or []:
            if isinstance(entry, str):
                if entry not in self.hub.connected:
                    raise ValueError(f"agent.run: MCP server '{entry}' is not connected; mcp.connect it first")
                servers.append(entry)
            else:
                spec = McpServerSpec.parse(entry, "agent.run mcp_servers entry")
                await self.hub.connect(spec)
                servers.append(spec.name)
        outcome = await run_agent(
            endpoint,
            prompt=prompt if isinstance(prompt, str) else compact(prompt),
            system=_opt(opts, "system", str) or "",
            hub=self.hub,
            servers=servers,
            meter=self.meter,
            on_text=self._partial,
            max_turns=_opt(opts, "max_turns", int) or s.max_turns,
            max_tokens=_opt(opts, "max_tokens", int) or s.max_tokens,
            retry=RetryPolicy(max_retries=s.max_retries),
            on_retry=self._retrying,
        )
        return outcome.to_json()

    async def _partial(self, text: str) -> None:
        await self.sink.emit(Partial(Inline(text)))

    async def _retrying(self, retry: int, delay: float, reason: str) -> None:
        await self.sink.emit(Progress("llm_retry", f"retry {retry} in {delay:.2f}s after {reason}"))

    def bus_emit(self, kind: Any, payload: Any = None, _id: Any = None) -> None:
        if not isinstance(kind, str) or not kind:
            raise ValueError("bus.emit needs an event kind string first")
        if kind == ARTIFACT_KIND:
            name = payload.get("name") if isinstance(payload, Mapping) else None
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f'bus.emit("artifact", ...) requires a string `name` naming the part (got {payload!r})'
                )
            content = payload.get("content") if isinstance(payload, Mapping) else None
            self._await(self.sink.emit(Artifact(name, Inline(content))))
            return
        if self.result is not None:
            return
        if isinstance(payload, Mapping):
            value = payload["content"] if "content" in payload else payload.get("response", payload)
            ok = payload.get("ok", True)
            if not isinstance(ok, bool):
                raise ValueError(f"bus.emit: payload.ok must be a boolean, got {ok!r}")
        else:
            value, ok = payload, True
        self.result = (value, ok, payload)

    def mcp_connect(self, raw: Any = None) -> dict[str, Any]:
        spec = McpServerSpec.parse(raw, "mcp.connect")
        tools = self._await(self.hub.connect(spec))
        return {"name": spec.name, "tools": [t.name for t in tools]}

    def mcp_list_tools(self, name: Any = None) -> list[dict[str, Any]]:
        if not isinstance(name, str) or name not in self.hub.connected:
            raise ValueError(f"mcp.list_tools: MCP server {name!r} is not connected")
        return [
            {"name": t.name, "description": t.description, "input_schema": t.schema} for t in self.hub.tools([name])
        ]

    def mcp_call(self, server: Any = None, tool: Any = None, args: Any = None) -> dict[str, Any]:
        if not isinstance(server, str) or not isinstance(tool, str):
            raise ValueError("mcp.call(server, tool, args) takes two names and a table")
        target = self.hub.find(tool)
        name = target[1] if target is not None and target[0] == server else tool
        text, is_error = self._await(self.hub.call(server, name, args if isinstance(args, Mapping) else {}))
        return {"content": text, "is_error": is_error}


def _opt(opts: Mapping[str, Any], key: str, kind: type[T]) -> T | None:
    value = opts.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"agent.run: {key} must be a {kind.__name__}")
    return value


def _json_encode(value: Any = None) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json_decode(text: Any = None) -> Any:
    if not isinstance(text, str):
        raise ValueError("std.json.decode takes a string")
    return json.loads(text)


# ── the kind ──────────────────────────────────────────────────────────────────────────────────────


class AgentBlockKind(AgentKind):
    """Builds an `AgentBlockSpawner`, validating the spec and the tool grant at compile time."""

    name = "agent_block"

    def unavailable_reason(self) -> str | None:
        """With neither provider SDK installed no agent can call a model: runs refuse the kind."""
        if installed_providers():
            return None
        return f"agent kind 'agent_block' needs the provider SDKs of the llm extra: {EXTRA_HINT}"

    def build(self, agent: Mapping[str, Any], env: LinkEnv) -> AgentBlockSpawner:
        name = str(agent.get("name"))
        spec = agent.get("spec") or {}
        if not isinstance(spec, Mapping):
            raise InvalidAgentSpec(f"agent '{name}': spec must be an object", None)
        unknown = set(spec) - SPEC_KEYS
        if unknown:
            raise InvalidAgentSpec(
                f"agent '{name}': unknown agent_block spec key(s): {', '.join(sorted(unknown))}",
                f"allowed: {', '.join(sorted(SPEC_KEYS))}",
            )
        profile = agent.get("profile") or {}
        model = profile.get("model") if isinstance(profile, Mapping) else None
        system = str(profile.get("system_prompt") or "") if isinstance(profile, Mapping) else ""
        tools = _effective_tools(agent, env.runners.get(name))
        servers = _mcp_servers(name, spec)
        script_path = spec.get("script_path")
        if script_path is not None:
            mcp_tools = [t for t in tools if t.startswith("mcp__")]
            if mcp_tools:
                raise InvalidAgentSpec(
                    f"agent '{name}': script mode cannot enforce the declared MCP tools ({', '.join(mcp_tools)}): "
                    "the script drives its own mcp.connect",
                    "drop the mcp__ entries from the tools (the script owns its connections), "
                    "or drop spec.script_path to get an enforced grant",
                )
            source, label = _script(name, script_path, env.base_dir)
        else:
            source, label = INVOKER, INVOKER_LABEL
        self._check_provider(name, model, needs_model=script_path is None)
        wanted = granted_servers(tools)
        root = spec.get("project_root")
        if root is not None and not isinstance(root, str):
            raise InvalidAgentSpec(f"agent '{name}': spec.project_root must be a path string", None)
        limits = lua_limits(name, spec, AGENT_LIMITS)
        return AgentBlockSpawner(
            AgentBlockSettings(
                agent=name,
                source=source,
                label=label,
                script_mode=script_path is not None,
                system=system,
                declared_model=model if isinstance(model, str) and model else None,
                granted=tuple(s for s in servers if s.name in wanted),
                project_root=Path(root) if root else Path.cwd(),
                rpc_timeout=_positive(name, spec, "mcp_rpc_timeout_ms", 30000) / 1000,
                max_turns=_positive(name, spec, "max_turns", DEFAULT_MAX_TURNS),
                max_tokens=_positive(name, spec, "max_tokens", DEFAULT_MAX_TOKENS),
                max_retries=_count(name, spec, "max_retries", 3),
                base_url=_string(name, spec, "base_url"),
                api_key_env=_string(name, spec, "api_key_env"),
                limits=limits,
            )
        )

    def _check_provider(self, name: str, model: Any, *, needs_model: bool) -> None:
        """The model must name a known provider (the default provider in prompt mode).

        Whether that provider's SDK is installed is checked when the model is called, so lint and
        build work on an installation without the llm extra.
        """
        if model is not None and not isinstance(model, str):
            raise InvalidAgentSpec(f"agent '{name}': profile.model must be a string such as 'openai:gpt-4o-mini'", None)
        if not model and not needs_model:
            return
        try:
            split_model(model or "", os.environ)
        except LlmError as exc:
            hint = f"or set {PROVIDER_ENV}" if "MSE_LLM_PROVIDER" in exc.message else None
            raise InvalidAgentSpec(f"agent '{name}': {exc.message}", hint) from None


def _effective_tools(agent: Mapping[str, Any], resolved: Any = None) -> list[str]:
    """The agent's tool grant: an `agent_block_in_process` runner's `tools` (even an empty list,
    from an inline `runner`, a `runner_ref` or `default_runner`) outrank `profile.tools`."""
    runner = resolved if resolved is not None else agent.get("runner")
    backend = runner.get("backend") if isinstance(runner, Mapping) else getattr(runner, "backend", None)
    if backend == "agent_block_in_process":
        tools = runner.get("tools") if isinstance(runner, Mapping) else getattr(runner, "tools", None)
        if isinstance(tools, list):
            return [str(t) for t in tools]
    profile = agent.get("profile")
    tools = profile.get("tools") if isinstance(profile, Mapping) else None
    return [str(t) for t in tools] if isinstance(tools, list) else []


def _mcp_servers(name: str, spec: Mapping[str, Any]) -> list[McpServerSpec]:
    raw = spec.get("mcp_servers")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidAgentSpec(
            f"agent '{name}': spec.mcp_servers must be a list",
            'e.g. "mcp_servers": [{"name": "docs", "command": "docs-mcp", "args": []}]',
        )
    out: list[McpServerSpec] = []
    for i, entry in enumerate(raw):
        try:
            server = McpServerSpec.parse(entry, f"spec.mcp_servers[{i}]")
        except ValueError as exc:
            raise InvalidAgentSpec(f"agent '{name}': {exc}", None) from None
        if any(s.name == server.name for s in out):
            raise InvalidAgentSpec(f"agent '{name}': two MCP servers are named '{server.name}'", None)
        out.append(server)
    return out


def _script(name: str, script_path: Any, base_dir: Path) -> tuple[str, str]:
    if not isinstance(script_path, str) or not script_path:
        raise InvalidAgentSpec(f"agent '{name}': spec.script_path must be a path string", None)
    path = Path(script_path)
    if not path.is_absolute():
        path = base_dir / path
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidAgentSpec(
            f"agent '{name}': cannot read spec.script_path {script_path!r}: {exc}",
            "a relative script_path is resolved against the Blueprint's folder",
        ) from None
    with default_pool().lease() as sandbox:
        error = sandbox.check_syntax(source, f"={path.name}")
    if error is not None:
        raise InvalidAgentSpec(f"agent '{name}': the script does not compile: {error.message}", "fix the Lua syntax")
    return source, path.name


def _positive(name: str, spec: Mapping[str, Any], key: str, default: int) -> int:
    value = spec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidAgentSpec(f"agent '{name}': spec.{key} must be a positive integer", None)
    return value


def _count(name: str, spec: Mapping[str, Any], key: str, default: int) -> int:
    value = spec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidAgentSpec(f"agent '{name}': spec.{key} must be a non-negative integer", None)
    return value


def _string(name: str, spec: Mapping[str, Any], key: str) -> str | None:
    value = spec.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidAgentSpec(f"agent '{name}': spec.{key} must be a non-empty string", None)
    return value


__all__ = ["AgentBlockKind", "AgentBlockSettings", "AgentBlockSpawner", "AgentBlockWorker"]
