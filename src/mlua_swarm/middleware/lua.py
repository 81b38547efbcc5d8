"""`LuaLayer`: spawn policy written in Lua.

`before` evaluates (mlua `eval` rules: an expression, else a chunk) to `function(ctx)`; raising
refuses the spawn with `RejectedByMiddleware`. `after` evaluates to `function(ctx, result)` and runs
once the worker ended well: `result` is `{value, ok}` of its last inline `Final`, and a returned
`{value, ok}` table is appended as an override `Final` (a missing `value` keeps the old value, a
missing `ok` keeps the old ok). After-hook failures are logged, never raised. `ctx` is
`{task_id, attempt, agent, operator = {kind, id}}`. Both hooks run sandboxed on Lua threads.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..core.ctx import Ctx
from ..dsl.sandbox import (
    AbortSignal,
    LuaAborted,
    LuaLimits,
    LuaPool,
    LuaScriptError,
    default_pool,
    run_in_lua_thread,
)
from ..errors import EngineError
from ..ids import StepId
from ..worker import Worker, wrap_join
from ..worker.adapter import SpawnerAdapter
from ..worker.errors import RejectedByMiddleware
from ..worker.output import Final, Inline
from .layer import SpawnerLayer

if TYPE_CHECKING:
    from ..core.engine import Engine
    from ..tokens import CapToken

log = logging.getLogger(__name__)

HOOK_LIMITS = LuaLimits(instructions=20_000_000, wall_secs=5.0, memory_bytes=32 * 1024 * 1024)
"""Hooks sit on every spawn, so they get a tighter budget than workers."""


class LuaLayer(SpawnerLayer):
    """A layer whose before/after policy is Lua source; `label` names it in messages."""

    name = "lua"

    def __init__(
        self,
        before: str | None = None,
        after: str | None = None,
        *,
        label: str = "lua-layer",
        limits: LuaLimits = HOOK_LIMITS,
        pool: LuaPool | None = None,
    ) -> None:
        self.before = before
        self.after = after
        self.label = label
        self.limits = limits
        self.pool = pool

    def wrap(self, inner: SpawnerAdapter) -> SpawnerAdapter:
        return _LuaLayerSpawner(self, inner)


def hook_ctx(ctx: Ctx) -> dict[str, Any]:
    """The table both hooks receive."""
    return {
        "task_id": str(ctx.task_id),
        "attempt": ctx.attempt,
        "agent": ctx.agent,
        "operator": {"kind": ctx.operator.kind.value, "id": ctx.operator.id},
    }


class _LuaLayerSpawner(SpawnerAdapter):
    def __init__(self, layer: LuaLayer, inner: SpawnerAdapter) -> None:
        self._layer = layer
        self._inner = inner

    async def spawn(self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken) -> Worker:
        layer = self._layer
        table = hook_ctx(ctx)
        if layer.before is not None:
            try:
                await self._call(layer.before, "before", [table])
            except (LuaScriptError, LuaAborted) as exc:
                raise RejectedByMiddleware(f"lua before [{layer.label}]: {exc}") from exc
        worker = await self._inner.spawn(engine, ctx, task_id, attempt, token)
        after = layer.after
        if after is None:
            return worker

        async def post(error: BaseException | None) -> BaseException | None:
            if error is None:
                await self._override(engine, token, task_id, attempt, after, table)
            return error

        return wrap_join(worker, post)

    async def _call(self, source: str, hook: str, args: list[Any]) -> Any:
        layer = self._layer
        signal = AbortSignal()
        chunkname = f"={layer.label}:{hook}"
        run = await run_in_lua_thread(
            layer.pool or default_pool(),
            lambda sb: sb.call_function(source, chunkname, args, signal=signal, limits=layer.limits),
            signal,
        )
        return run.value

    async def _override(
        self, engine: Engine, token: CapToken, task_id: StepId, attempt: int, source: str, table: dict[str, Any]
    ) -> None:
        final = next((ev for ev in reversed(engine.output_tail(task_id, attempt)) if isinstance(ev, Final)), None)
        if final is None or not isinstance(final.content, Inline):
            return
        try:
            result = await self._call(source, "after", [table, {"value": final.content.value, "ok": final.ok}])
        except (LuaScriptError, LuaAborted) as exc:
            log.warning("lua after [%s] on step %s: %s", self._layer.label, task_id, exc)
            return
        if not isinstance(result, dict):
            return
        ok = result.get("ok", final.ok)
        if not isinstance(ok, bool):
            log.warning("lua after [%s] on step %s: `ok` must be a boolean, got %r", self._layer.label, task_id, ok)
            return
        value = result.get("value", final.content.value)
        try:
            await engine.submit_output(token, task_id, attempt, Final(Inline(value), ok))
        except EngineError as exc:
            log.warning("lua after [%s] on step %s: override Final refused: %s", self._layer.label, task_id, exc)


__all__ = ["HOOK_LIMITS", "LuaLayer", "hook_ctx"]
