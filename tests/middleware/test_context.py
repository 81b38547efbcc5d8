"""Launch layers that shape the ctx: agent context tiers and policy, task input, alias, resolver."""

from __future__ import annotations

from typing import Any

import pytest

from mlua_swarm.core.ctx import Ctx
from mlua_swarm.core.engine import Engine, RunContext, TaskSpec
from mlua_swarm.diagnostics import DiagnosticError, Level
from mlua_swarm.ids import RunId
from mlua_swarm.middleware import ResolverLayer, SpawnerStack, TaskInput, link
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker.adapter import InProcSpawner, WorkerInvocation

from ..conftest import run_one
from .helpers import RecordingRun


async def view_of(inv: WorkerInvocation) -> Any:
    assert inv.context is not None
    return inv.context.to_json()


BLUEPRINT = {
    "default_agent_ctx": {"team": "core", "region": "eu", "tier": "global"},
    "metas": [{"name": "shared", "ctx": {"tier": "meta", "owner": "ops"}}],
    "agents": [
        {
            "name": "probe",
            "kind": "rust_fn",
            "meta": {
                "meta_ref": "shared",
                "ctx": {"region": "us", "secret": "s3", "tier": "agent"},
                "context_policy": {"exclude": ["secret", "work_dir"]},
            },
        },
        {"name": "plain", "kind": "rust_fn"},
    ],
    "default_context_policy": {"include": ["team", "project_root"]},
    "metadata": {"project_name_alias": "acme"},
    "projection_placement": {"root": "work_dir"},
}


async def test_ctx_tiers_merge_with_step_over_agent_over_global_and_policy_filters(
    engine: Engine, op: CapToken
) -> None:
    router = InProcSpawner().register("probe", view_of).register("plain", view_of)
    task_input = TaskInput(project_root="/srv/acme", work_dir="/srv/acme/wd", task_metadata={"ticket": 7})
    linked, diagnostics = link(router, BLUEPRINT, engine, run=RecordingRun("R-1"), task_input=task_input)
    assert diagnostics == []
    run = RunContext(RunId.new())
    step = await engine.start_task(op, TaskSpec("probe", step_ctx={"region": "step", "project_root": "/ignored"}))
    view = (await engine.run_step(op, step, linked, run=run)).value
    assert view == {
        "task_id": step,
        "agent": "probe",
        "attempt": 1,
        "project_root": "/srv/acme",
        "task_metadata": {"ticket": 7},
        "run_id": run.run_id,
        "project_name_alias": "acme",
        "extra": {"region": "step", "team": "core", "tier": "agent", "owner": "ops"},
        "steps": [],
    }
    plain = (await run_one(engine, op, linked, TaskSpec("plain"))).value
    assert plain["extra"] == {"team": "core"}
    assert "project_root" in plain and "work_dir" not in plain and "project_name_alias" not in plain


async def test_runtime_keeps_every_tier_and_records_policy_and_placement(engine: Engine, op: CapToken) -> None:
    seen: list[dict[str, Any]] = []

    class Probe(InProcSpawner[Any]):
        async def spawn(self, engine: Engine, ctx: Ctx, *rest: Any) -> Any:
            seen.append(dict(ctx.meta.runtime))
            return await super().spawn(engine, ctx, *rest)

    linked, _ = link(Probe().register("probe", view_of), BLUEPRINT, engine, run=RecordingRun())
    await run_one(engine, op, linked, TaskSpec("probe"))
    (runtime,) = seen
    assert runtime["secret"] == "s3" and runtime["region"] == "us"
    assert runtime["context_policy"] == {
        "include": None,
        "exclude": ["secret", "work_dir"],
        "steps": None,
        "steps_exclude": [],
    }
    assert runtime["__projection_placement"] == {"root": "work_dir"}
    assert runtime["agent_context"].extra["region"] == "us"


def test_non_object_ctx_tier_is_a_warning_and_bad_context_policy_an_error(engine: Engine) -> None:
    _, diagnostics = link(InProcSpawner(), {"default_agent_ctx": ["not", "an", "object"]}, engine, run=RecordingRun())
    assert [(d.code, d.level, d.location.json_path) for d in diagnostics] == [
        ("agent-ctx-not-object", Level.WARN, "$.default_agent_ctx")
    ]
    with pytest.raises(DiagnosticError) as caught:
        link(InProcSpawner(), {"default_context_policy": {"include": "team"}}, engine, run=RecordingRun())
    assert [(d.code, d.location.json_path) for d in caught.value.diagnostics] == [
        ("invalid-context-policy", "$.default_context_policy.include")
    ]


async def test_resolver_routes_to_the_agent_it_names(engine: Engine, op: CapToken) -> None:
    class Canary:
        async def resolve(self, hint: str, ctx: Ctx) -> str:
            return f"{hint}-v2" if ctx.attempt == 1 else hint

    router = InProcSpawner().register("work", lambda inv: "v1").register("work-v2", lambda inv: inv.agent)
    stack = SpawnerStack(router).layer(ResolverLayer(Canary())).build()
    assert (await run_one(engine, op, stack, TaskSpec("work"))).value == "work-v2"
