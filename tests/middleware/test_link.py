"""`link` and `SpawnerStack`: the documented layer order, hint handling and Blueprint diagnostics."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlua_swarm.core.ctx import Ctx, OperatorInfo, OperatorKind
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.diagnostics import DiagnosticError, Level
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.ids import StepId
from mlua_swarm.middleware import AroundLayer, LayerRegistry, PolicyConfig, SpawnerStack, TaskInput, link
from mlua_swarm.middleware.join import after_join
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker import Worker
from mlua_swarm.worker.adapter import InProcSpawner, SpawnerAdapter, WorkerInvocation

from ..conftest import run_one
from .helpers import RecordingRun


class Recorder(AroundLayer):
    """Logs its before and after parts, and which launch keys the ctx it sees carries."""

    def __init__(self, name: str, log: list[Any]) -> None:
        self.name = name
        self.log = log

    async def around(
        self, inner: SpawnerAdapter, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Worker:
        runtime = ctx.meta.runtime
        self.log.append(("before", self.name, "agent_context" in runtime, runtime.get("project_root")))
        worker = await inner.spawn(engine, ctx, task_id, attempt, token)

        async def after(err: BaseException | None) -> BaseException | None:
            self.log.append(("after", self.name))
            return err

        return after_join(worker, after)


def recording_router(log: list[Any]) -> InProcSpawner[Any]:
    async def work(inv: WorkerInvocation) -> Any:
        log.append(("worker", inv.agent))
        return "done"

    return InProcSpawner().register("work", work)


async def test_spawner_stack_makes_each_added_layer_the_outermost(engine: Engine, op: CapToken) -> None:
    log: list[Any] = []
    stack = SpawnerStack(recording_router(log)).layer(Recorder("a", log)).layer(Recorder("b", log)).build()
    outcome = await run_one(engine, op, stack, TaskSpec("work"))
    assert outcome.kind == "pass"
    names = [entry[:2] for entry in log]
    assert names == [("before", "b"), ("before", "a"), ("worker", "work"), ("after", "a"), ("after", "b")]


async def test_link_orders_launch_hint_and_base_layers_as_documented(engine: Engine, op: CapToken) -> None:
    log: list[Any] = []
    registry = LayerRegistry()
    for name in ("b1", "b2"):
        registry.add_base(lambda _e, name=name: Recorder(name, log))
    for name in ("h1", "h2"):
        registry.add_hint(name, lambda _e, name=name: Recorder(name, log))
    blueprint = {
        "agents": [{"name": "work", "kind": "rust_fn"}, {"name": "auditor", "kind": "rust_fn"}],
        "spawner_hints": {"layers": ["h1", "h2"]},
        "metadata": {"project_name_alias": "proj"},
        "audits": [{"agent": "auditor", "steps": ["nothing-matches"], "mode": "sync"}],
        "policy": {
            "deny": ["kind:subprocess"],
            "budget": {"max_attempts": 10},
            "concurrency": {"work": 1},
            "rate_limits": {"work": {"rate_per_sec": 1000, "burst": 5}},
        },
    }
    linked, diagnostics = link(
        recording_router(log),
        blueprint,
        engine,
        run=RecordingRun(),
        registry=registry,
        task_input=TaskInput(project_root="/srv/p"),
    )
    assert diagnostics == []
    assert linked.layer_names == [
        "policy_gate",
        "budget",
        "task_input",
        "after_run_audit",
        "project_name_alias",
        "agent_context",
        "h2",
        "h1",
        "b2",
        "b1",
        "concurrency",
        "rate_limit",
    ]
    async with linked:
        outcome = await run_one(engine, op, linked, TaskSpec("work"))
    assert outcome.kind == "pass"
    assert log == [
        ("before", "h2", True, "/srv/p"),
        ("before", "h1", True, "/srv/p"),
        ("before", "b2", True, "/srv/p"),
        ("before", "b1", True, "/srv/p"),
        ("worker", "work"),
        ("after", "b1"),
        ("after", "b2"),
        ("after", "h1"),
        ("after", "h2"),
    ]


async def test_an_empty_blueprint_links_only_the_agent_context_layer(engine: Engine, op: CapToken) -> None:
    linked, diagnostics = link(recording_router([]), {}, engine, run=RecordingRun())
    assert (linked.layer_names, diagnostics) == (["agent_context"], [])
    assert (await run_one(engine, op, linked, TaskSpec("work"))).value == "done"


def test_unknown_hint_is_a_warning_and_is_skipped(engine: Engine) -> None:
    blueprint = {"spawner_hints": {"layers": ["main_ai", "turbo"]}}
    linked, diagnostics = link(InProcSpawner(), blueprint, engine, run=RecordingRun())
    assert [(d.code, d.level, d.location.json_path) for d in diagnostics] == [
        ("unknown-spawner-hint", Level.WARN, "$.spawner_hints.layers[1]")
    ]
    assert "main_ai" in (diagnostics[0].hint or "")
    assert linked.layer_names == ["agent_context", "main_ai"]


def test_operator_delegate_is_the_removed_spawner_hint_error(engine: Engine) -> None:
    blueprint = {"spawner_hints": {"layers": ["senior_escalation", "operator_delegate"]}}
    with pytest.raises(DiagnosticError) as caught:
        link(InProcSpawner(), blueprint, engine, run=RecordingRun())
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.code == "removed-spawner-hint"
    assert diagnostic.level is Level.ERROR
    assert diagnostic.location.json_path == "$.spawner_hints.layers[1]"
    assert diagnostic.hint


def test_malformed_policy_is_refused_with_paths(engine: Engine) -> None:
    blueprint = {"policy": {"concurency": {"a": 2}, "concurrency": {"a": 0}, "rate_limits": {"a": {"burst": 2}}}}
    with pytest.raises(DiagnosticError) as caught:
        link(InProcSpawner(), blueprint, engine, run=RecordingRun())
    found = {(d.code, d.location.json_path) for d in caught.value.diagnostics}
    assert found == {
        ("invalid-policy", "$.policy.concurency"),
        ("invalid-policy", "$.policy.concurrency"),
        ("invalid-policy", "$.policy.rate_limits.a.rate_per_sec"),
    }


def test_policy_naming_an_undeclared_agent_is_a_warning(engine: Engine) -> None:
    blueprint = {"agents": [{"name": "work", "kind": "rust_fn"}], "policy": {"deny": ["wrok", "kind:lua"]}}
    _, diagnostics = link(InProcSpawner(), blueprint, engine, run=RecordingRun())
    assert [(d.code, d.location.json_path) for d in diagnostics] == [("unknown-policy-agent", "$.policy.deny[0]")]


async def test_main_ai_hook_refuses_and_observes(engine: Engine) -> None:
    seen: list[Any] = []

    class Hook:
        async def before(self, ctx: Ctx) -> None:
            seen.append(("before", ctx.agent))
            if ctx.agent == "risky":
                raise PermissionError("not today")

        async def after(self, ctx: Ctx, value: Any) -> None:
            seen.append(("after", ctx.agent, value))

    async def work(inv: WorkerInvocation) -> Any:
        return {"n": 1}

    router = InProcSpawner().register("work", work).register("risky", work)
    op = engine.attach("main-ai", operator=OperatorInfo(kind=OperatorKind.MAIN_AI, spawn_hook=Hook()))
    linked, _ = link(router, {"spawner_hints": {"layers": ["main_ai"]}}, engine, run=RecordingRun())
    assert (await run_one(engine, op, linked, TaskSpec("work"))).value == {"n": 1}
    with pytest.raises(DispatchFailed, match=r"spawn rejected by middleware: main_ai hook refused agent 'risky'"):
        await run_one(engine, op, linked, TaskSpec("risky"))
    assert seen == [("before", "work"), ("after", "work", {"n": 1}), ("before", "risky")]


async def test_main_ai_hook_is_inactive_for_automate_operators(engine: Engine) -> None:
    class Refuser:
        async def before(self, ctx: Ctx) -> None:
            raise PermissionError("never")

        async def after(self, ctx: Ctx, value: Any) -> None:
            raise AssertionError("not called")

    async def work(inv: WorkerInvocation) -> Any:
        return 1

    op = engine.attach("automate", operator=OperatorInfo(kind=OperatorKind.AUTOMATE, spawn_hook=Refuser()))
    linked, _ = link(
        InProcSpawner().register("work", work), {"spawner_hints": {"layers": ["main_ai"]}}, engine, run=RecordingRun()
    )
    assert (await run_one(engine, op, linked, TaskSpec("work"))).kind == "pass"


def test_the_documented_policy_example_is_valid() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "middleware.md").read_text()
    (example,) = re.findall(r"```yaml\n(policy:.*?)```", doc, re.S)
    policy = PolicyConfig.model_validate(yaml.safe_load(example)["policy"])
    assert policy.concurrency == {"review": 2, "*": 16}
    assert policy.rate_limits["*"].burst == 1
    assert policy.budget is not None and policy.budget.max_wall_secs == 900


def test_one_link_reports_every_problem_at_once(engine: Engine) -> None:
    blueprint = {
        "spawner_hints": {"layers": ["turbo", "operator_delegate"]},
        "policy": {"deny": [""]},
        "audits": [{"mode": "sync"}],
        "default_context_policy": {"exclude": "x"},
    }
    with pytest.raises(DiagnosticError) as caught:
        link(InProcSpawner(), blueprint, engine, run=RecordingRun())
    assert [(d.code, d.level, d.location.json_path) for d in caught.value.diagnostics] == [
        ("unknown-spawner-hint", Level.WARN, "$.spawner_hints.layers[0]"),
        ("removed-spawner-hint", Level.ERROR, "$.spawner_hints.layers[1]"),
        ("invalid-policy", Level.ERROR, "$.policy.deny"),
        ("invalid-audit", Level.ERROR, "$.audits[0].agent"),
        ("invalid-context-policy", Level.ERROR, "$.default_context_policy.exclude"),
    ]
    assert "removed-spawner-hint" in str(caught.value)
