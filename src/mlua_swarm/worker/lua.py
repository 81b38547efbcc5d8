"""The `lua` agent kind: an inline Lua chunk run in a sandbox for each attempt.

The chunk sees `_PROMPT` (the rendered prompt), `_AGENT`, `_TASK_ID`, `_ATTEMPT`, `_CTX` (the
prompt parsed as JSON; nil when it does not parse), `_TASK_METADATA`, `_AGENT_CTX` (the agent
context's `extra`; nil when empty) and `host.<name>(arg)` for each bridge. Its return value is the
result: a table with a `value` or `ok` key gives (`value`, `ok`), anything else is the value with
ok = true. Beyond upstream, `mse.stage(name, value)` stages a named part (such as `verdict`), so
the step's value becomes `{out, parts}` like any worker that stages parts. Scripts run on Lua
threads under instruction, wall-time and memory budgets, and the worker's cancel token (fired by
`cancel_task` or the step timeout) stops a running script.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from ..cancel import CancellationToken
from ..core.ctx import AgentContextView, Ctx
from ..dsl.sandbox import (
    DEFAULT_LIMITS,
    AbortSignal,
    Bridge,
    LuaAborted,
    LuaLimits,
    LuaPool,
    LuaRun,
    LuaSandbox,
    LuaScriptError,
    default_pool,
    run_in_lua_thread,
)
from ..errors import EngineError
from ..ids import StepId, WorkerId
from . import JoinHandleWorker, WorkerJoinHandler
from .adapter import SpawnerAdapter, WorkerResult, render_prompt, submit_result
from .errors import SpawnInternalError, WorkerCancelled, WorkerFailed
from .kinds import AgentKind, InvalidAgentSpec, LinkEnv
from .output import Artifact, EngineSink, Inline
from .pyfn import import_callable

if TYPE_CHECKING:
    from ..core.engine import Engine
    from ..tokens import CapToken


Stdlib = Literal["sandbox", "full"]
"""`spec.stdlib`: the sandbox (default) or Lua's standard library as upstream gives it."""


class LuaWorker(JoinHandleWorker):
    """A running Lua chunk."""


class LuaSpawner(SpawnerAdapter):
    """Runs one Lua chunk per attempt; `label` names it in error messages."""

    worker_kind = "lua"

    def __init__(
        self,
        source: str,
        label: str,
        *,
        bridges: Mapping[str, Bridge] | None = None,
        limits: LuaLimits = DEFAULT_LIMITS,
        pool: LuaPool | None = None,
        stdlib: Stdlib = "sandbox",
    ) -> None:
        self.source = source
        self.label = label
        self.bridges = dict(bridges or {})
        self.limits = limits
        self._pool = pool
        self.stdlib = stdlib

    async def spawn(self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken) -> LuaWorker:
        try:
            prompt = render_prompt(await engine.fetch_prompt(token, task_id))
        except EngineError as exc:
            raise SpawnInternalError(f"fetch_prompt: {exc}") from exc
        globals_ = script_globals(prompt, ctx, AgentContextView.from_ctx(ctx))
        cancel = CancellationToken()
        task = asyncio.create_task(self._drive(engine, token, task_id, attempt, globals_, cancel))
        return LuaWorker(WorkerJoinHandler(WorkerId.new(), cancel, task))

    async def _drive(
        self,
        engine: Engine,
        token: CapToken,
        task_id: StepId,
        attempt: int,
        globals_: dict[str, Any],
        cancel: CancellationToken,
    ) -> None:
        signal = AbortSignal()
        unregister = cancel.on_cancel(signal.fire)
        parts: list[tuple[str, Any]] = []
        try:
            pool = self._pool or default_pool()
            run = await run_in_lua_thread(pool, lambda sb: self._run(sb, globals_, parts, signal), signal)
        except LuaAborted as exc:
            if exc.reason == "cancelled":
                raise WorkerCancelled() from None
            knob = "instructions" if exc.reason == "budget" else "wall_secs"
            raise WorkerFailed(
                f"lua eval [{self.label}]: {exc}; raise spec.limits.{knob} if that is expected"
            ) from None
        except LuaScriptError as exc:
            raise WorkerFailed(f"lua eval [{self.label}]: {exc.message}") from None
        finally:
            unregister()
        value, ok = self._result(run.value)
        sink = EngineSink(engine, token, task_id, attempt)
        for name, part in parts:
            try:
                await sink.emit(Artifact(name, Inline(part)))
            except EngineError as exc:
                raise WorkerFailed(f"lua eval [{self.label}]: part '{name}' was refused: {exc}") from exc
        stats = {"lua_instructions": run.instructions, "lua_ms": round(run.elapsed_secs * 1000, 3)}
        submit_result(engine, token, task_id, attempt, WorkerResult(value, ok, stats), self.worker_kind)

    def _run(
        self, sandbox: LuaSandbox, globals_: dict[str, Any], parts: list[tuple[str, Any]], signal: AbortSignal
    ) -> LuaRun:
        def stage(name: Any, value: Any = None) -> None:
            if not isinstance(name, str) or not name:
                raise ValueError("a part needs a non-empty string name")
            parts.append((name, value))

        namespaces = {"host": self.bridges, "mse": {"stage": stage}}
        if self.stdlib == "full":
            # The script may change the runtime's own libraries, so this sandbox is not reused.
            sandbox.poisoned = True
            return sandbox.run(
                self.source,
                f"={self.label}",
                globals_=globals_,
                namespaces=namespaces,
                signal=signal,
                limits=self.limits,
                extras=sandbox.stdlib(),
            )
        return sandbox.run(
            self.source,
            f"={self.label}",
            globals_=globals_,
            namespaces=namespaces,
            signal=signal,
            limits=self.limits,
            find_module=_sandboxed_require,
            blocked=SANDBOX_BLOCKED,
        )

    def _result(self, result: Any) -> tuple[Any, bool]:
        """Upstream's return convention: `{value=..., ok=...}` or the bare value."""
        if not isinstance(result, dict) or ("value" not in result and "ok" not in result):
            return result, True
        ok = result.get("ok", True)
        if not isinstance(ok, bool):
            raise WorkerFailed(f"lua eval [{self.label}]: the returned `ok` must be a boolean, got {ok!r}")
        return result.get("value", result), ok


_OPT_IN = 'set "stdlib": "full" in the agent\'s spec to run it with Lua\'s standard library'
SANDBOX_BLOCKED = {
    name: f"{name} is not available to a sandboxed lua worker; {_OPT_IN}" for name in ("os", "io", "dofile", "loadfile")
}
"""What a sandboxed script reading one of these names is told."""


def _sandboxed_require(name: str) -> tuple[str | None, str]:
    return None, f"a sandboxed lua worker can require only preloaded modules; {_OPT_IN}"


def script_globals(prompt: str, ctx: Ctx, view: AgentContextView) -> dict[str, Any]:
    """The `_PROMPT` ... `_AGENT_CTX` globals a Lua worker sees (absent ones are left out, i.e. nil)."""
    out: dict[str, Any] = {
        "_PROMPT": prompt,
        "_AGENT": ctx.agent,
        "_TASK_ID": str(ctx.task_id),
        "_ATTEMPT": ctx.attempt,
    }
    with contextlib.suppress(ValueError):
        out["_CTX"] = json.loads(prompt)
    if view.task_metadata is not None:
        out["_TASK_METADATA"] = view.task_metadata
    if view.extra:
        out["_AGENT_CTX"] = view.extra
    return out


class LuaKind(AgentKind):
    """Builds a `LuaSpawner` from `spec.source` (+ `label`) or a pre-registered `spec.fn_id` script.

    `bridges` become `host.<name>` in every script (JSON in, JSON out, synchronous), joined by the
    agent's own `spec.bridges` (`{"name": "module:function"}`); `limits` are the default budgets,
    which `spec.limits` (`instructions`, `wall_secs`, `memory_bytes`) may override. Scripts run
    sandboxed unless `spec.stdlib` is `"full"`: then they get the runtime's `os`, `io`, `require`,
    `package`, `dofile` and `loadfile` (still under the budgets; each such run uses a fresh runtime).
    """

    name = "lua"

    def __init__(
        self,
        bridges: Mapping[str, Bridge] | None = None,
        scripts: Mapping[str, str] | None = None,
        limits: LuaLimits = DEFAULT_LIMITS,
        pool: LuaPool | None = None,
    ) -> None:
        self.bridges = dict(bridges or {})
        self.scripts = dict(scripts or {})
        self.limits = limits
        self.pool = pool

    def build(self, agent: Mapping[str, Any], env: LinkEnv) -> LuaSpawner:
        name = str(agent.get("name"))
        spec = agent.get("spec")
        if not isinstance(spec, Mapping):
            spec = {}
        source, label = self._source(name, spec)
        pool = self.pool or default_pool()
        with pool.lease() as sandbox:
            error = sandbox.check_syntax(source, f"={label}")
        if error is not None:
            raise InvalidAgentSpec(
                f"agent '{name}': the Lua source does not compile: {error.message}",
                "fix the Lua syntax in spec.source",
            )
        bridges = {**self.bridges, **_spec_bridges(name, spec, env)}
        return LuaSpawner(
            source,
            label,
            bridges=bridges,
            limits=_limits(name, spec, self.limits),
            pool=self.pool,
            stdlib=_stdlib(name, spec),
        )

    def _source(self, name: str, spec: Mapping[str, Any]) -> tuple[str, str]:
        label = spec.get("label")
        if label is not None and (not isinstance(label, str) or not label):
            raise InvalidAgentSpec(f"agent '{name}': spec.label must be a non-empty string", None)
        source = spec.get("source")
        if source is not None:
            if not isinstance(source, str):
                raise InvalidAgentSpec(f"agent '{name}': spec.source must be a string of Lua", None)
            return source, label or f"{name}.lua"
        fn_id = spec.get("fn_id")
        if fn_id is None:
            raise InvalidAgentSpec(
                f"agent '{name}' of kind lua needs spec.source (or spec.fn_id)",
                'add "spec": {"source": "return { value = _PROMPT }"}',
            )
        script = self.scripts.get(str(fn_id))
        if script is None:
            known = ", ".join(sorted(self.scripts)) or "none"
            raise InvalidAgentSpec(
                f"agent '{name}': Lua script id '{fn_id}' is not registered (known: {known})",
                "inline the script as spec.source, or register it with LuaKind(scripts=...)",
            )
        return script, label or f"{fn_id}.lua"


def _spec_bridges(name: str, spec: Mapping[str, Any], env: LinkEnv) -> dict[str, Bridge]:
    """`spec.bridges`: `{"name": "package.module:function"}`, imported with the Blueprint's folder importable."""
    raw = spec.get("bridges")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
        raise InvalidAgentSpec(
            f"agent '{name}': spec.bridges maps bridge names to 'module:function' strings",
            'e.g. "bridges": {"lookup": "my_tools:lookup"}',
        )
    bridges: dict[str, Bridge] = {}
    for bridge, target in raw.items():
        try:
            bridges[str(bridge)] = import_callable(target, env.base_dir)
        except (ImportError, AttributeError, ValueError) as exc:
            raise InvalidAgentSpec(
                f"agent '{name}': cannot import bridge '{bridge}' from {target!r}: {exc}",
                "check the module is importable from the Blueprint's folder and the name after ':' exists",
            ) from exc
    return bridges


def _stdlib(name: str, spec: Mapping[str, Any]) -> Stdlib:
    raw = spec.get("stdlib", "sandbox")
    if raw == "sandbox":
        return "sandbox"
    if raw == "full":
        return "full"
    raise InvalidAgentSpec(
        f'agent \'{name}\': spec.stdlib must be "sandbox" (the default) or "full", got {raw!r}',
        '"full" gives the script os, io, require of files and dofile, as upstream runs lua workers',
    )


def _limits(name: str, spec: Mapping[str, Any], default: LuaLimits) -> LuaLimits:
    raw = spec.get("limits")
    if raw is None:
        return default
    if not isinstance(raw, Mapping) or set(raw) - {"instructions", "wall_secs", "memory_bytes"}:
        raise InvalidAgentSpec(
            f"agent '{name}': spec.limits takes only instructions, wall_secs and memory_bytes",
            'e.g. "limits": {"instructions": 1000000, "wall_secs": 2}',
        )
    values: dict[str, Any] = {}
    for key in ("instructions", "wall_secs", "memory_bytes"):
        value = raw.get(key, getattr(default, key))
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_LIMIT
        ):
            raise InvalidAgentSpec(
                f"agent '{name}': spec.limits.{key} must be a positive number up to 2^53, got {value!r:.40}",
                "leave a budget out to keep its default",
            )
        values[key] = int(value) if key != "wall_secs" and value is not None else value
    return LuaLimits(**values)


MAX_LIMIT = 2**53
"""The largest budget `spec.limits` takes (far past any real one; larger values overflow the runtime's
memory counter or are not finite)."""


__all__ = ["LuaKind", "LuaSpawner", "LuaWorker", "script_globals"]
