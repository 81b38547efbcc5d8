"""LuaLayer through the real engine: before refuses a spawn, after appends an override Final."""

from __future__ import annotations

from typing import Any

import pytest

from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.middleware.lua import LuaLayer
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker.adapter import InProcSpawner, SpawnerAdapter, WorkerInvocation, WorkerResult
from mlua_swarm.worker.output import Final

from ..conftest import run_one


async def echo(inv: WorkerInvocation) -> Any:
    return {"echo": inv.input}


async def refuse(inv: WorkerInvocation) -> Any:
    return WorkerResult("not good", ok=False)


async def crash(inv: WorkerInvocation) -> Any:
    raise RuntimeError("worker crashed")


def agents() -> SpawnerAdapter:
    return InProcSpawner().register("echo", echo).register("refuse", refuse).register("crash", crash)


def finals(engine: Engine, step: Any) -> list[Final]:
    return [ev for ev in engine.output_tail(step, 1) if isinstance(ev, Final)]


async def test_before_raising_rejects_the_spawn(engine: Engine, op: CapToken) -> None:
    layer = LuaLayer(before="function(ctx) if ctx.agent == 'echo' then error('echo is off today', 0) end end")
    with pytest.raises(DispatchFailed, match=r"spawn rejected by middleware: lua before \[lua-layer\]: echo is off"):
        await run_one(engine, op, layer.wrap(agents()), TaskSpec("echo", "hi"))


async def test_before_returning_lets_the_spawn_through(engine: Engine, op: CapToken) -> None:
    layer = LuaLayer(before="return function(ctx) assert(ctx.attempt == 1) end")
    outcome = await run_one(engine, op, layer.wrap(agents()), TaskSpec("echo", "hi"))
    assert outcome.value == {"echo": "hi"}


async def test_a_runaway_before_hook_rejects_instead_of_hanging(engine: Engine, op: CapToken) -> None:
    from mlua_swarm.dsl.sandbox import LuaLimits

    layer = LuaLayer(before="function(ctx) while true do end end", limits=LuaLimits(instructions=1_000_000))
    with pytest.raises(DispatchFailed, match="instruction budget exceeded"):
        await run_one(engine, op, layer.wrap(agents()), TaskSpec("echo", "hi"))


async def test_after_sees_ctx_and_result_and_overrides_the_value(engine: Engine, op: CapToken) -> None:
    after = """function(ctx, r)
      return { value = { agent = ctx.agent, attempt = ctx.attempt, task = ctx.task_id,
                         operator = ctx.operator.kind, original = r.value, was_ok = r.ok } }
    end"""
    step = await engine.start_task(op, TaskSpec("echo", "hi"))
    outcome = await engine.run_step(op, step, LuaLayer(after=after).wrap(agents()))
    assert outcome.kind == "pass"
    assert outcome.value == {
        "agent": "echo",
        "attempt": 1,
        "task": str(step),
        "operator": "automate",
        "original": {"echo": "hi"},
        "was_ok": True,
    }
    original, override = finals(engine, step)
    assert original.content.value == {"echo": "hi"}
    assert override.content.value == outcome.value


async def test_after_can_flip_ok_and_keeps_the_value_when_it_omits_it(engine: Engine, op: CapToken) -> None:
    layer = LuaLayer(after="function(ctx, r) return { ok = false } end")
    outcome = await run_one(engine, op, layer.wrap(agents()), TaskSpec("echo", "hi"))
    assert (outcome.kind, outcome.value) == ("blocked", {"echo": "hi"})


async def test_after_can_rescue_a_blocked_result(engine: Engine, op: CapToken) -> None:
    layer = LuaLayer(after="function(ctx, r) return { value = 'rescued: ' .. r.value, ok = true } end")
    outcome = await run_one(engine, op, layer.wrap(agents()), TaskSpec("refuse", ""))
    assert (outcome.kind, outcome.value) == ("pass", "rescued: not good")


async def test_after_returning_nothing_changes_nothing(engine: Engine, op: CapToken) -> None:
    step = await engine.start_task(op, TaskSpec("echo", "hi"))
    outcome = await engine.run_step(op, step, LuaLayer(after="function(ctx, r) end").wrap(agents()))
    assert outcome.value == {"echo": "hi"}
    assert len(finals(engine, step)) == 1


async def test_after_errors_are_swallowed(engine: Engine, op: CapToken) -> None:
    step = await engine.start_task(op, TaskSpec("echo", "hi"))
    outcome = await engine.run_step(op, step, LuaLayer(after="function(ctx, r) error('oops') end").wrap(agents()))
    assert (outcome.kind, outcome.value) == ("pass", {"echo": "hi"})
    assert len(finals(engine, step)) == 1


async def test_after_does_not_run_when_the_worker_failed(engine: Engine, op: CapToken) -> None:
    layer = LuaLayer(after="function(ctx, r) return { value = 'should not appear' } end")
    with pytest.raises(DispatchFailed, match="worker crashed"):
        await run_one(engine, op, layer.wrap(agents()), TaskSpec("crash", ""))


async def test_layers_compose_innermost_after_first(engine: Engine, op: CapToken) -> None:
    inner = LuaLayer(after="function(ctx, r) return { value = r.value.echo .. '+inner' } end", label="inner")
    outer = LuaLayer(after="function(ctx, r) return { value = r.value .. '+outer' } end", label="outer")
    outcome = await run_one(engine, op, outer.wrap(inner.wrap(agents())), TaskSpec("echo", "x"))
    assert outcome.value == "x+inner+outer"
