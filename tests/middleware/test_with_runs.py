"""The linked stack under the real run layer: a Blueprint's `policy` shapes a flow run end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlua_swarm import WorkerInvocation
from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.core.engine import Engine
from mlua_swarm.run import run_blueprint
from mlua_swarm.worker.output import Artifact

from ..conftest import P, fn_blueprint


async def test_a_budget_cancels_a_runaway_loop_run() -> None:
    calls: list[int] = []

    async def spin(inv: WorkerInvocation) -> Any:
        calls.append(inv.input)
        return inv.input + 1

    flow = {
        "kind": "loop",
        "counter": P("$.i"),
        "max": 1000,
        "cond": {"op": "lit", "value": True},
        "body": {"kind": "step", "ref": "spin", "in": P("$.n"), "out": P("$.n")},
    }
    raw = fn_blueprint(flow, {"spin": spin}, policy={"budget": {"max_attempts": 7}})
    result = await run_blueprint(compile_blueprint(raw, base_dir=Path.cwd(), fns={"spin": spin}), {"n": 0})
    assert result.status == "cancelled"
    assert "run budget exceeded: more than max_attempts=7 attempts" in result.error["message"]
    assert calls == list(range(7))


async def test_a_denied_step_fails_the_run_with_the_reason_and_audits_land_on_the_rest() -> None:
    async def plan(inv: WorkerInvocation) -> Any:
        return {"plan": inv.input}

    async def shell(inv: WorkerInvocation) -> Any:
        raise AssertionError("a denied agent never runs")

    async def auditor(inv: WorkerInvocation) -> Any:
        return {"reviewed": inv.input["step_ref"]}

    fns = {"plan": plan, "shell": shell, "auditor": auditor}
    flow = {
        "kind": "seq",
        "children": [
            {"kind": "step", "ref": "plan", "in": P("$.goal"), "out": P("$.plan")},
            {"kind": "step", "ref": "shell", "in": P("$.plan"), "out": P("$.done")},
        ],
    }
    raw = fn_blueprint(flow, fns, policy={"deny": ["shell"]}, audits=[{"agent": "auditor", "mode": "async"}])
    engine = Engine()
    async with engine.events() as stream:
        result = await run_blueprint(compile_blueprint(raw, base_dir=Path.cwd(), fns=fns), {"goal": "g"}, engine=engine)
        landed = []
        while (event := stream.get_nowait()) is not None:
            if event.kind == "mw.audit_landed":
                landed.append(event)
    assert result.status == "failed"
    assert result.error["failed_step"] == "shell"
    assert (
        "spawn rejected by middleware: agent 'shell' is denied by policy.deny rule 'shell'" in result.error["message"]
    )
    assert result.partial_ctx["plan"] == {"plan": "g"}
    (event,) = landed
    assert event.step_id is not None
    tail = engine.output_tail(event.step_id, 1)
    assert [e for e in tail if isinstance(e, Artifact)] == [Artifact("audit:plan", tail[-1].content)]
    assert tail[-1].content.as_value() == {"reviewed": "plan"}


async def test_a_budget_cancels_a_wide_fanout_run() -> None:
    calls: list[int] = []

    async def lane(inv: WorkerInvocation) -> Any:
        calls.append(inv.input)
        return inv.input

    flow = {
        "kind": "fanout",
        "items": P("$.items"),
        "bind": P("$.item"),
        "join": "all",
        "out": P("$.lanes"),
        "body": {"kind": "step", "ref": "lane", "in": P("$.item"), "out": P("$.y")},
    }
    raw = fn_blueprint(flow, {"lane": lane}, policy={"budget": {"max_attempts": 5}, "concurrency": {"lane": 2}})
    result = await run_blueprint(
        compile_blueprint(raw, base_dir=Path.cwd(), fns={"lane": lane}), {"items": list(range(20))}
    )
    assert result.status == "cancelled", result.error
    assert "max_attempts=5" in result.error["message"]
    assert len(calls) <= 5
